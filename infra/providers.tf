# Three configurations of one provider, and no default one: every resource in this
# root module names its provider, and each child module gets exactly one.
#
#   aws.primary    the active region: the table, the KMS key and the whole platform
#   aws.secondary  the passive region: the table replica and the replica key only
#   aws.edge       always us-east-1: CloudFront-scoped WAF and its logs live there
#                  (the same region as aws.primary with the defaults)

provider "aws" {
  alias  = "primary"
  region = var.primary_region

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "secondary"
  region = var.secondary_region

  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "edge"
  region = "us-east-1"

  default_tags {
    tags = local.tags
  }
}
