# envplane's shared layer, applied once (its own state), in front of the two regional
# roots (infra/region, one state per region):
#
#   kms.tf      the multi-region KMS key and its replicas
#   table.tf    the DynamoDB global table and its replica
#   secrets.tf  the origin-verify secret (CloudFront -> api), replicated
#   ecr.tf      ECR replication of the runner image to the secondary region
#   edge.tf     CloudFront + WAF (modules/edge), Route 53 failover and health checks
#   outputs.tf  `region_tfvars`: everything a regional root needs, as one JSON object

locals {
  tags = merge(
    {
      Project   = "envplane"
      ManagedBy = "terraform"
    },
    var.tags,
  )

  platform_regions = [var.primary_region, var.secondary_region]
}
