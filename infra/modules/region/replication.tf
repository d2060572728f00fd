# Cross-region replication of the artifacts bucket (Terraform states and plans) to the
# peer region's artifacts bucket, `<name>-artifacts-<account>-<peer region>`, which the
# peer region's own apply of this module creates (its name is derived, so no value from
# the other region's state is needed).
#
# Bidirectional: each region's instance replicates its bucket to the other. Whichever
# region is active writes the states, and its writes reach the other region within the
# replication time control's 15 minutes (99.99 % of objects, per the S3 SLA), so a
# failover finds the states there, and a failback finds the states written during the
# failover back in the home region without a manual copy. S3 never replicates a replica
# again (its replication status is REPLICA), so the two rules do not loop.
#
# Objects are SSE-KMS under the platform key; the rule selects SSE-KMS objects and
# re-encrypts the replicas under the peer region's key (the replica of the multi-region
# key: same key material, but S3 asks for a key of the destination region). Delete
# markers are replicated (a state deleted by a destroy stays deleted on the other side);
# deletions of a specific version are not (S3 never replicates those), which keeps a
# malicious or mistaken version delete from propagating.

data "aws_iam_policy_document" "replication_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "replication" {
  count = var.artifact_replication ? 1 : 0

  name               = "${var.name}-artifacts-replication-${local.region}"
  description        = "S3 replicates ${local.artifacts_bucket_name} to ${local.peer_artifacts_bucket}"
  assume_role_policy = data.aws_iam_policy_document.replication_trust.json
}

data "aws_iam_policy_document" "replication" {
  statement {
    sid       = "ReadReplicationConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }

  statement {
    sid = "ReadSourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
    ]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid = "WriteReplicas"
    actions = [
      "s3:ReplicateObject",
      "s3:ReplicateDelete",
      "s3:ReplicateTags",
    ]
    resources = ["arn:${local.partition}:s3:::${local.peer_artifacts_bucket}/*"]
  }

  statement {
    sid       = "DecryptSource"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = ["${aws_s3_bucket.artifacts.arn}/*", aws_s3_bucket.artifacts.arn]
    }
  }

  statement {
    sid       = "EncryptReplicas"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.peer_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.peer_region}.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = ["arn:${local.partition}:s3:::${local.peer_artifacts_bucket}/*", "arn:${local.partition}:s3:::${local.peer_artifacts_bucket}"]
    }
  }
}

resource "aws_iam_role_policy" "replication" {
  count = var.artifact_replication ? 1 : 0

  name   = "replicate-artifacts"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication.json
}

resource "aws_s3_bucket_replication_configuration" "artifacts" {
  count = var.artifact_replication ? 1 : 0

  bucket = aws_s3_bucket.artifacts.id
  role   = aws_iam_role.replication[0].arn

  rule {
    id     = "to-${var.peer_region}"
    status = "Enabled"

    filter {}

    delete_marker_replication {
      status = "Enabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }

    destination {
      bucket        = "arn:${local.partition}:s3:::${local.peer_artifacts_bucket}"
      storage_class = "STANDARD"

      encryption_configuration {
        replica_kms_key_id = var.peer_kms_key_arn
      }

      replication_time {
        status = "Enabled"

        time {
          minutes = 15
        }
      }

      metrics {
        status = "Enabled"

        event_threshold {
          minutes = 15
        }
      }
    }
  }

  # S3 refuses a replication configuration on a bucket without versioning.
  depends_on = [aws_s3_bucket_versioning.artifacts]
}
