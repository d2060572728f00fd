# ---- ECR: the runner image in both regions ---------------------------------------------------------
#
# Registry-level replication (one configuration per registry and region): every image
# pushed to `<name>-runner` in the home region is copied to the repository of the same
# name in the secondary region, which that region's root creates (KMS-encrypted,
# immutable tags) and whose task definition pulls from it. One direction only: images
# are built and pushed in the home region. During a failover with the home region down,
# push a new image to the secondary region's repository directly; after the failback,
# push it to the home region too (docs/operations.md).

resource "aws_ecr_replication_configuration" "runner" {
  provider = aws.primary

  replication_configuration {
    rule {
      destination {
        region      = var.secondary_region
        registry_id = local.account_id
      }

      repository_filter {
        filter      = "${var.name}-runner"
        filter_type = "PREFIX_MATCH"
      }
    }
  }
}
