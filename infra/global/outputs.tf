output "region_tfvars" {
  description = "Everything a regional root (infra/region) takes from this one: write it as infra/region/global.auto.tfvars.json (`terraform output -json region_tfvars > ../region/global.auto.tfvars.json`). Plain values: applying a region never reads this state or another region's API."
  value = {
    name               = var.name
    home_region        = var.primary_region
    regions            = local.platform_regions
    table_name         = aws_dynamodb_table.main.name
    table_arns         = local.table_arns
    kms_key_arns       = local.kms_key_arns
    origin_secret_arns = local.origin_secret_arns
    origin_domain_name = local.origin_domain_name
    public_api_url     = local.public_api_url
    egress_ips         = local.egress_ips
  }
}

output "api_url" {
  description = "The public API URL clients (CLI, GitHub webhooks, browsers) and sandboxes use: the custom domain or CloudFront. Empty until the edge exists."
  value       = local.public_api_url
}

output "cloudfront_domain_name" {
  description = "The distribution's domain (target of the custom domain's alias record)."
  value       = local.edge_enabled ? module.edge[0].distribution_domain_name : null
}

output "web_acl_arn" {
  description = "The WAF web ACL in front of the API."
  value       = local.edge_enabled ? module.edge[0].web_acl_arn : null
}

output "table_name" {
  description = "ENVPLANE_TABLE_NAME: the DynamoDB global table."
  value       = aws_dynamodb_table.main.name
}

output "table_arns" {
  description = "The table in each region."
  value       = local.table_arns
}

output "kms_key_arns" {
  description = "The platform key in each region (ENVPLANE_KMS_KEY_ID there)."
  value       = local.kms_key_arns
}

output "origin_secret_arns" {
  description = "The origin-verify secret in each region (ENVPLANE_ORIGIN_SECRET_ARN there)."
  value       = local.origin_secret_arns
}

output "egress_ips" {
  description = "Every sandbox egress address the regions reported, for customers' allow-lists."
  value       = local.egress_ips
}

output "health_check_ids" {
  description = "Route 53 health checks of each region's /health (empty without DNS)."
  value       = { for region, check in aws_route53_health_check.region : region => check.id }
}
