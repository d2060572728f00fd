# The artifacts bucket (ENVPLANE_ARTIFACTS_BUCKET): Terraform states and plans under
# `<org_id>/state/<environment_id>/<version>-<unique>` and `<org_id>/plans/<deployment_id>`, each
# already sealed by the key ring, and SSE-KMS under the platform key as a second layer
# (shared/aws/src/s3.rs sends SSE-KMS with ENVPLANE_KMS_KEY_ID on every PutObject).

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:No server access logs: object-level access is audited with CloudTrail data events (an account trail, README known gaps); access logs would need a third, unencrypted-by-KMS log bucket per region.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new objects: states and plans are read back through the api only.
  bucket = local.artifacts_bucket_name

  # Every Terraform state of every environment lives here.
  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.artifact_noncurrent_version_days
    }

    # A delete marker whose versions all expired (replicated deletes included).
    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

# TLS only, and nothing written under another encryption or key than the platform's.
data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.artifacts.arn,
      "${aws_s3_bucket.artifacts.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Default encryption already applies the platform key to a request that names none
  # (and an UploadPart names none); these refuse one that asks for anything else.
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyOtherKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [var.kms_key_arn]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

# The launch bucket (ENVPLANE_LAUNCH_BUCKET): one environment file per sandbox launch,
# `launch/<deployment_id>/<attempt>.env`, holding the launch credential the sandbox
# trades once for its job (shared/aws/src/launch_file.rs). RunTask names the file, so
# DescribeTasks, CloudTrail and the task events never carry the credential; the deployer
# writes it and ECS reads it with the runner's execution role, nobody else. Files expire
# after a day: by then every credential in them is traded or expired.

resource "aws_s3_bucket" "launch" {
  #checkov:skip=CKV_AWS_18:No server access logs: object-level access is audited with CloudTrail data events; the files live one day.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new launch files: ECS reads the one RunTask names.
  #checkov:skip=CKV_AWS_144:Not replicated on purpose: a launch file is read by a task in its own region within minutes and holds a one-time launch credential that must not be copied anywhere.
  #checkov:skip=CKV_AWS_21:Unversioned on purpose: a launch credential must disappear with its file after a day, not linger in noncurrent versions.
  #checkov:skip=CKV_AWS_145:SSE-S3 on purpose: ECS reads environment files with the execution role, which then needs no KMS permission; the files live one day.
  bucket = local.launch_bucket_name

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_s3_bucket_ownership_controls" "launch" {
  bucket = aws_s3_bucket.launch.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "launch" {
  bucket = aws_s3_bucket.launch.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# SSE-S3: ECS reads environment files with the execution role, which then needs no KMS
# permission.
resource "aws_s3_bucket_server_side_encryption_configuration" "launch" {
  bucket = aws_s3_bucket.launch.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "launch" {
  bucket = aws_s3_bucket.launch.id

  rule {
    id     = "expire-launch-files"
    status = "Enabled"

    filter {}

    expiration {
      days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "launch_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.launch.arn,
      "${aws_s3_bucket.launch.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Identity policies grant the deployer PutObject and the execution role GetObject;
  # this keeps every other principal of the account (an operator's broad role included)
  # from reading a credential, except the account root for recovery.
  statement {
    sid       = "OnlyTheExecutionRoleReads"
    effect    = "Deny"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.launch.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "aws:PrincipalArn"
      values = [
        aws_iam_role.runner_execution.arn,
        "arn:${local.partition}:iam::${local.account_id}:root",
      ]
    }
  }
}

resource "aws_s3_bucket_policy" "launch" {
  bucket = aws_s3_bucket.launch.id
  policy = data.aws_iam_policy_document.launch_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.launch]
}
