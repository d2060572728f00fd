# ---- DynamoDB: the single table, as a global table --------------------------------------------
#
# Mirrors shared/aws/src/dynamodb.rs `create_table_with_key` and docs/storage.md exactly:
#   PK (S) / SK (S)
#   GSI1: GSI1PK (S) / GSI1SK (S), projection ALL  (records with a parent)
#   GSI2: GSI2PK (S) / GSI2SK (S), projection ALL  (records with an index key)
# TTL on `expires_at` (Unix seconds). Streams (NEW_AND_OLD_IMAGES) are what global tables
# version 2019.11.21 replicate from.
#
# The replica is its own resource (aws_dynamodb_table_replica) rather than a `replica`
# block: only the resource has deletion_protection_enabled (provider 5.100), and the
# table must then ignore its `replica` attribute (the provider's documented pairing).

resource "aws_dynamodb_table" "main" {
  provider = aws.primary

  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "PK"
  range_key                   = "SK"
  stream_enabled              = true
  stream_view_type            = "NEW_AND_OLD_IMAGES"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "PK"
    type = "S"
  }

  attribute {
    name = "SK"
    type = "S"
  }

  attribute {
    name = "GSI1PK"
    type = "S"
  }

  attribute {
    name = "GSI1SK"
    type = "S"
  }

  attribute {
    name = "GSI2PK"
    type = "S"
  }

  attribute {
    name = "GSI2SK"
    type = "S"
  }

  global_secondary_index {
    name            = "GSI1"
    hash_key        = "GSI1PK"
    range_key       = "GSI1SK"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "GSI2"
    hash_key        = "GSI2PK"
    range_key       = "GSI2SK"
    projection_type = "ALL"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }

  point_in_time_recovery {
    enabled = true
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  lifecycle {
    prevent_destroy = true
    ignore_changes  = [replica]
  }
}

resource "aws_dynamodb_table_replica" "secondary" {
  provider = aws.secondary

  global_table_arn            = aws_dynamodb_table.main.arn
  kms_key_arn                 = aws_kms_replica_key.secondary.arn
  point_in_time_recovery      = true
  deletion_protection_enabled = var.table_deletion_protection

  lifecycle {
    prevent_destroy = true
  }
}

locals {
  table_arns = {
    (var.primary_region)   = aws_dynamodb_table.main.arn
    (var.secondary_region) = aws_dynamodb_table_replica.secondary.arn
  }
}
