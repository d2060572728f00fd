# One region, one state: apply this root once per region, each in its own workspace
# named after the region (or its own backend key), with -var region=<region>:
#
#   terraform workspace select -or-create eu-west-1
#   terraform apply -var region=eu-west-1 -var active=true
#
# Everything shared comes in as plain variables (global.auto.tfvars.json, written from
# infra/global's `region_tfvars` output): this root reads no other state and calls no
# other region's API, so the surviving region can be applied while the other is down.

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}
