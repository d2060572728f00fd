# The public entry: CloudFront in front of the HTTP API, with an AWS WAF web ACL.
#
# Why CloudFront: AWS WAF associates with REST APIs, ALBs, AppSync, Cognito, App Runner,
# Verified Access and CloudFront, not with API Gateway HTTP APIs. A CLOUDFRONT-scoped
# web ACL must be created in us-east-1: this module runs with a us-east-1 provider.
#
# The distribution caches nothing (managed policy CachingDisabled) and forwards every
# viewer header but Host (AllViewerExceptHostHeader: API Gateway routes on its own host
# name), every query string and cookie; with caching disabled that includes the
# Authorization header.

locals {
  origin_domain    = replace(var.api_endpoint, "https://", "")
  origin_id        = "http-api"
  custom_domain    = var.domain_name != ""
  waf_metric_names = replace(var.name, "-", "_")
}

data "aws_cloudfront_cache_policy" "caching_disabled" {
  name = "Managed-CachingDisabled"
}

data "aws_cloudfront_origin_request_policy" "all_viewer_except_host" {
  name = "Managed-AllViewerExceptHostHeader"
}

# ---- WAF --------------------------------------------------------------------------------------------------

# The sandboxes' own egress addresses (the NAT gateways' Elastic IPs). Every sandbox
# shares them, so a per-IP rate limit would count all sandboxes as one client, and
# the body rules would inspect Terraform states, plans and log chunks: both rules below
# skip these addresses. (Sandboxes call the execute-api endpoint by default and do not
# pass through here at all; this matters once sandbox_api_url is the public URL.)
resource "aws_wafv2_ip_set" "sandbox_egress" {
  name               = "${var.name}-sandbox-egress"
  description        = "envplane sandboxes' NAT gateway addresses"
  scope              = "CLOUDFRONT"
  ip_address_version = "IPV4"
  addresses          = [for ip in var.sandbox_egress_ips : "${ip}/32"]
}

resource "aws_wafv2_web_acl" "api" {
  name        = "${var.name}-api"
  description = "envplane public API: AWS managed rules and a per-IP rate limit"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  # Log4j-style and other known-bad request patterns.
  rule {
    name     = "aws-known-bad-inputs"
    priority = 10

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.waf_metric_names}_known_bad_inputs"
      sampled_requests_enabled   = true
    }
  }

  # The OWASP-style core rule set, with the rules in common_rule_overrides counting only;
  # not applied to the sandboxes' own addresses.
  rule {
    name     = "aws-common"
    priority = 20

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"

        dynamic "rule_action_override" {
          for_each = var.common_rule_overrides

          content {
            name = rule_action_override.value

            action_to_use {
              count {}
            }
          }
        }

        scope_down_statement {
          not_statement {
            statement {
              ip_set_reference_statement {
                arn = aws_wafv2_ip_set.sandbox_egress.arn
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.waf_metric_names}_common"
      sampled_requests_enabled   = true
    }
  }

  # Per client IP, except the sandboxes' own addresses.
  rule {
    name     = "rate-limit-per-ip"
    priority = 30

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit              = var.rate_limit
        aggregate_key_type = "IP"

        scope_down_statement {
          not_statement {
            statement {
              ip_set_reference_statement {
                arn = aws_wafv2_ip_set.sandbox_egress.arn
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.waf_metric_names}_rate_limit"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${local.waf_metric_names}_api"
    sampled_requests_enabled   = true
  }
}

# WAF logs must go to a log group named aws-waf-logs-*. The Authorization header (API
# keys, runner tokens) is redacted.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${var.name}-api"
  retention_in_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_logging_configuration" "api" {
  resource_arn            = aws_wafv2_web_acl.api.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}

# ---- CloudFront ---------------------------------------------------------------------------------------------

resource "aws_cloudfront_distribution" "api" {
  enabled         = true
  comment         = "${var.name} API (WAF in front of the HTTP API)"
  is_ipv6_enabled = true
  http_version    = "http2and3"
  price_class     = var.price_class
  aliases         = local.custom_domain ? [var.domain_name] : []
  web_acl_id      = aws_wafv2_web_acl.api.arn

  origin {
    origin_id   = local.origin_id
    domain_name = local.origin_domain

    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = 30
      origin_keepalive_timeout = 5
    }
  }

  default_cache_behavior {
    target_origin_id         = local.origin_id
    viewer_protocol_policy   = "https-only"
    allowed_methods          = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods           = ["GET", "HEAD"]
    cache_policy_id          = data.aws_cloudfront_cache_policy.caching_disabled.id
    origin_request_policy_id = data.aws_cloudfront_origin_request_policy.all_viewer_except_host.id
    compress                 = false
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = local.custom_domain ? false : true
    acm_certificate_arn            = local.custom_domain ? var.certificate_arn : null
    ssl_support_method             = local.custom_domain ? "sni-only" : null
    minimum_protocol_version       = local.custom_domain ? "TLSv1.2_2021" : "TLSv1"
  }
}
