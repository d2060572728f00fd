# ---- the public entry: CloudFront + WAF, and Route 53 ------------------------------------------------
#
# One distribution for both regions. Its origin:
#   - with domain_name + hosted_zone_id: origin.<domain_name>, a Route 53 failover record
#     (PRIMARY: the home region, SECONDARY: the other) over the two regions' API Gateway
#     custom domains of that name, each PRIMARY/SECONDARY record tied to a health check
#     of its region's https://<execute-api host>/health. The api answers /health with 503
#     while its region is passive, so when envplane-ops fails over (the table's
#     active-region item), the health checks follow and DNS moves the origin within about
#     the failure threshold (3 x 30 s) plus the record's TTL; nothing here is applied.
#   - without: the execute-api endpoint of edge_origin_region; failing the edge over means
#     setting edge_origin_region and applying this root (us-east-1 only, so it works with
#     either platform region down).
#
# The health checks call the execute-api endpoint without the origin header: the api's
# /health must answer without it (it says only whether the region is active).

locals {
  edge_origin_region = var.edge_origin_region != "" ? var.edge_origin_region : var.primary_region

  regions_reported = alltrue([for region in local.platform_regions : contains(keys(var.regions), region)])

  regions_with_origin = [
    for region, reported in var.regions : region
    if contains(local.platform_regions, region) && reported.origin_target_domain_name != ""
  ]

  dns_enabled = var.domain_name != "" && var.hosted_zone_id != "" && local.regions_reported && length(local.regions_with_origin) == 2

  edge_enabled = var.enable_edge && contains(keys(var.regions), local.edge_origin_region)

  origin_domain_name = var.domain_name != "" && var.hosted_zone_id != "" ? "origin.${var.domain_name}" : ""

  edge_origin = local.dns_enabled ? local.origin_domain_name : (
    local.edge_enabled ? replace(var.regions[local.edge_origin_region].api_endpoint, "https://", "") : ""
  )

  # Every sandbox egress address the regions reported (the WAF exempts them from the
  # per-IP rate limit; the api publishes them as ENVPLANE_EGRESS_IPS).
  egress_ips = sort(distinct(flatten([for region, reported in var.regions : reported.egress_ips])))

  public_api_url = var.domain_name != "" ? "https://${var.domain_name}" : (
    local.edge_enabled ? module.edge[0].api_url : ""
  )
}

module "edge" {
  source = "../modules/edge"
  count  = local.edge_enabled ? 1 : 0

  providers = {
    aws = aws.edge
  }

  name                  = var.name
  origin_domain_name    = local.edge_origin
  origin_secret_value   = data.aws_secretsmanager_secret_version.origin_current.secret_string
  domain_name           = var.domain_name
  certificate_arn       = var.certificate_arn
  price_class           = var.cloudfront_price_class
  rate_limit            = var.waf_rate_limit
  common_rule_overrides = var.waf_common_rule_overrides
  log_retention_days    = var.log_retention_days
  log_kms_key_arn       = local.edge_kms_key_arn
  sandbox_egress_ips    = local.egress_ips
}

# ---- Route 53 ----------------------------------------------------------------------------------------------

resource "aws_route53_health_check" "region" {
  provider = aws.edge
  for_each = local.dns_enabled ? toset(local.platform_regions) : toset([])

  reference_name    = substr("${var.name}-${each.key}", 0, 28)
  type              = "HTTPS"
  fqdn              = replace(var.regions[each.key].api_endpoint, "https://", "")
  port              = 443
  resource_path     = "/health"
  enable_sni        = true
  request_interval  = 30
  failure_threshold = 3
  regions           = length(var.health_check_regions) > 0 ? var.health_check_regions : null

  tags = {
    Name = "${var.name} api ${each.key}"
  }
}

resource "aws_route53_record" "origin" {
  #checkov:skip=CKV2_AWS_23:The alias targets are the regions' API Gateway custom domains (origin.<domain>), created by infra/region and passed in as variables, which checkov cannot follow.
  provider = aws.edge
  for_each = local.dns_enabled ? toset(local.platform_regions) : toset([])

  zone_id         = var.hosted_zone_id
  name            = local.origin_domain_name
  type            = "A"
  set_identifier  = each.key
  health_check_id = aws_route53_health_check.region[each.key].id

  failover_routing_policy {
    type = each.key == var.primary_region ? "PRIMARY" : "SECONDARY"
  }

  alias {
    name                   = var.regions[each.key].origin_target_domain_name
    zone_id                = var.regions[each.key].origin_target_zone_id
    evaluate_target_health = false
  }
}

resource "aws_route53_record" "api" {
  provider = aws.edge
  for_each = local.dns_enabled && local.edge_enabled ? toset(["A", "AAAA"]) : toset([])

  zone_id = var.hosted_zone_id
  name    = var.domain_name
  type    = each.key

  alias {
    name                   = module.edge[0].distribution_domain_name
    zone_id                = module.edge[0].distribution_hosted_zone_id
    evaluate_target_health = false
  }
}
