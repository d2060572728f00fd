# ---- KMS: one multi-region customer-managed key, replicated -------------------------------------
#
# It encrypts the table (and its replica, with the replica key), wraps the per-organization
# data keys of the key ring (GenerateDataKey/Decrypt with the encryption context
# {"envplane:organization": <org id>}), is the SSE-KMS key of the artifacts buckets, and
# encrypts the log groups, the alarm topics, the ECR repositories and the origin secret.
# A multi-region key keeps the same key material in the secondary region, so a data key
# wrapped in the primary region unwraps there after a failover.
#
# The key policy separates three things:
#   administration  key_admin_role_arns only (policy, rotation, tags, replication);
#   deletion        kms:ScheduleKeyDeletion and kms:DisableKey are denied to every
#                   principal but break_glass_role_arn (explicit deny: no IAM policy,
#                   not even an administrator's, overrides it);
#   use             delegated to IAM ("IamPoliciesMayGrantUse", use actions only): the
#                   functions' roles, the replication role and the runner's execution
#                   role each get the use they need from an IAM policy in
#                   modules/region, scoped by kms:ViaService and encryption context.
#                   We keep IAM-based use because those roles are created per region by
#                   another state (infra/region); naming them here would make this root
#                   depend on the regions' states, and every new role a key policy edit.
# plus the service principals that cannot get an IAM policy: CloudWatch Logs (log group
# encryption, scoped to this account's log groups by encryption context), CloudWatch
# alarms and EventBridge (publishing to the encrypted SNS topics), and DynamoDB's
# grants (kms:CreateGrant only for AWS resources).

data "aws_caller_identity" "primary" {
  provider = aws.primary
}

data "aws_partition" "primary" {
  provider = aws.primary
}

data "aws_iam_session_context" "caller" {
  provider = aws.primary

  arn = data.aws_caller_identity.primary.arn
}

locals {
  account_id   = data.aws_caller_identity.primary.account_id
  partition    = data.aws_partition.primary.partition
  account_root = "arn:${local.partition}:iam::${local.account_id}:root"

  key_admins = length(var.key_admin_role_arns) > 0 ? var.key_admin_role_arns : [data.aws_iam_session_context.caller.issuer_arn]

  # A replica of the key in us-east-1 for the WAF log group, unless one of the two
  # regions is us-east-1 already.
  edge_region_is_platform_region = contains([var.primary_region, var.secondary_region], "us-east-1")

  key_policy_regions = {
    primary   = var.primary_region
    secondary = var.secondary_region
    edge      = "us-east-1"
  }
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means the key it is attached to, nothing else; write access is limited by principal and condition in each statement.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means the key it is attached to (KMS accepts nothing else in a key policy).
  #checkov:skip=CKV_AWS_109:Permissions management (Put*, CreateGrant) is limited to the key administrators, and grants to AWS resources (kms:GrantIsForAWSResource); Resource "*" is this key.
  provider = aws.primary
  for_each = local.key_policy_regions

  statement {
    sid = "KeyAdministration"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:Create*",
      "kms:Describe*",
      "kms:Enable*",
      "kms:Get*",
      "kms:List*",
      "kms:Put*",
      "kms:ReplicateKey",
      "kms:Revoke*",
      "kms:RotateKeyOnDemand",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:Update*",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.key_admins
    }
  }

  statement {
    sid       = "DenyDeletionExceptBreakGlass"
    effect    = "Deny"
    actions   = ["kms:ScheduleKeyDeletion", "kms:DisableKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    dynamic "condition" {
      for_each = var.break_glass_role_arn != "" ? [var.break_glass_role_arn] : []

      content {
        test     = "StringNotEquals"
        variable = "aws:PrincipalArn"
        values   = [condition.value]
      }
    }
  }

  dynamic "statement" {
    for_each = var.break_glass_role_arn != "" ? [var.break_glass_role_arn] : []

    content {
      sid       = "BreakGlass"
      actions   = ["kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:CancelKeyDeletion", "kms:EnableKey"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = [statement.value]
      }
    }
  }

  statement {
    sid = "IamPoliciesMayGrantUse"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  # DynamoDB encrypts the table (and its streams, replicas and backups) through grants
  # it creates for itself; principals of this account may let it, through DynamoDB only.
  statement {
    sid = "DynamoDbUse"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${each.value}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }

  # Grants for AWS resources only (DynamoDB's; also what ECR, Lambda and Secrets Manager
  # replication create through IAM-granted use).
  statement {
    sid       = "GrantsForAwsResources"
    actions   = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Decrypt*",
      "kms:Describe*",
      "kms:Encrypt*",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${each.value}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${each.value}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "AlarmsAndEventsToEncryptedTopics"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "main" {
  provider = aws.primary

  description             = "${var.name}: table, per-organization data keys, artifacts, logs, topics, secrets"
  multi_region            = true
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key["primary"].json

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_kms_alias" "main" {
  provider = aws.primary

  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}

# Rotation of a multi-region key is set on the primary and shared by its replicas.
resource "aws_kms_replica_key" "secondary" {
  provider = aws.secondary

  description             = "${var.name}: replica of the platform key in the secondary region"
  primary_key_arn         = aws_kms_key.main.arn
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key["secondary"].json

  lifecycle {
    prevent_destroy = true
  }
}

resource "aws_kms_alias" "secondary" {
  provider = aws.secondary

  name          = "alias/${var.name}"
  target_key_id = aws_kms_replica_key.secondary.key_id
}

resource "aws_kms_replica_key" "edge" {
  provider = aws.edge
  count    = local.edge_region_is_platform_region ? 0 : 1

  description             = "${var.name}: replica of the platform key for the edge's logs (us-east-1)"
  primary_key_arn         = aws_kms_key.main.arn
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key["edge"].json

  lifecycle {
    prevent_destroy = true
  }
}

locals {
  kms_key_arns = {
    (var.primary_region)   = aws_kms_key.main.arn
    (var.secondary_region) = aws_kms_replica_key.secondary.arn
  }

  edge_kms_key_arn = local.edge_region_is_platform_region ? local.kms_key_arns["us-east-1"] : aws_kms_replica_key.edge[0].arn
}
