# Three configurations of one provider, and no default one: every resource names its
# provider.
#
#   aws.primary    the home region: the multi-region KMS key, the table, the origin
#                  secret, the ECR replication configuration
#   aws.secondary  the other region: the KMS replica key, the table replica (and the
#                  secret's replica, which Secrets Manager manages from the primary)
#   aws.edge       always us-east-1: CloudFront-scoped WAF, its logs and their key
#
# This root holds what both regions share. It never has to be applied during a failover:
# each region's root (infra/region) takes what it needs from this root's outputs as
# plain variables, so the surviving region is appliable when the other one is down.

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
