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
  origin_id        = "http-api"
  custom_domain    = var.domain_name != ""
  waf_metric_names = replace(var.name, "-", "_")

  # The common rule set's rules that inspect the body. They count inside the group and
  # are blocked by the rule "common-body-rules" below, by their labels, except on the
  # paths whose bodies are Terraform states, plans and log chunks (/v1/state/,
  # /v1/runner/): those legitimately hold anything (scripts, URLs, file paths), and a
  # false positive there fails a deployment. SizeRestrictions_BODY (over 8 KB) is never
  # blocked: the API takes bodies up to its quotas, and API Gateway and Lambda cap them.
  body_rules         = ["CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY", "EC2MetaDataSSRF_BODY"]
  counted_rules      = distinct(concat(local.body_rules, ["SizeRestrictions_BODY"], var.common_rule_overrides))
  body_rule_labels   = [for rule in local.body_rules : "awswaf:managed:aws:core-rule-set:${replace(rule, "_BODY", "_Body")}"]
  body_exempt_prefix = ["/v1/state/", "/v1/runner/"]
}

data "aws_cloudfront_cache_policy" "caching_disabled" {
  name = "Managed-CachingDisabled"
}

data "aws_cloudfront_origin_request_policy" "all_viewer_except_host" {
  name = "Managed-AllViewerExceptHostHeader"
}

# HSTS, X-Content-Type-Options, X-Frame-Options, Referrer-Policy, X-XSS-Protection on
# every answer.
data "aws_cloudfront_response_headers_policy" "security_headers" {
  name = "Managed-SecurityHeadersPolicy"
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

  custom_response_body {
    key          = "rate-limited"
    content_type = "APPLICATION_JSON"
    content      = jsonencode({ error = "too many requests" })
  }

  # Addresses AWS threat intelligence knows as bots, scanners and malware hosts.
  rule {
    name     = "aws-ip-reputation"
    priority = 5

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.waf_metric_names}_ip_reputation"
      sampled_requests_enabled   = true
    }
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
          for_each = local.counted_rules

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

  # The common rule set's body rules (counted above, so they only labelled the request),
  # blocked everywhere but on the state and runner paths.
  rule {
    name     = "common-body-rules"
    priority = 25

    action {
      block {}
    }

    statement {
      and_statement {
        statement {
          or_statement {
            dynamic "statement" {
              for_each = local.body_rule_labels

              content {
                label_match_statement {
                  scope = "LABEL"
                  key   = statement.value
                }
              }
            }
          }
        }

        statement {
          not_statement {
            statement {
              or_statement {
                dynamic "statement" {
                  for_each = local.body_exempt_prefix

                  content {
                    byte_match_statement {
                      search_string         = statement.value
                      positional_constraint = "STARTS_WITH"

                      field_to_match {
                        uri_path {}
                      }

                      text_transformation {
                        priority = 0
                        type     = "NONE"
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${local.waf_metric_names}_common_body"
      sampled_requests_enabled   = true
    }
  }

  # Per client IP, except the sandboxes' own addresses; answered with 429 (the runner
  # and the CLI back off on 429, a 403 reads as a refusal).
  rule {
    name     = "rate-limit-per-ip"
    priority = 30

    action {
      block {
        custom_response {
          response_code            = 429
          custom_response_body_key = "rate-limited"

          response_header {
            name  = "retry-after"
            value = "60"
          }
        }
      }
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
  kms_key_id        = var.log_kms_key_arn
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
  #checkov:skip=CKV_AWS_174:With a custom domain the minimum is TLSv1.2_2021; CloudFront's default certificate (*.cloudfront.net, no domain_name) only takes TLSv1 as setting. Set domain_name for production.
  #checkov:skip=CKV_AWS_86:The WAF logs every request (Authorization redacted) to CloudWatch Logs; CloudFront standard logs would need an S3 bucket with ACLs enabled, which the account's buckets refuse.
  #checkov:skip=CKV_AWS_374:No geo restriction: envplane's users and GitHub's webhook senders are anywhere; the WAF filters by reputation and rate instead.
  #checkov:skip=CKV_AWS_310:CloudFront origin groups fail over GET/HEAD/OPTIONS only, and the API is POST/PUT/DELETE too; the origin fails over in DNS instead (origin.<domain>, Route 53 failover records with health checks, infra/global/edge.tf).
  #checkov:skip=CKV_AWS_305:An API, not a website: there is no root object to serve.
  #checkov:skip=CKV2_AWS_47:The attached web ACL has AWSManagedRulesKnownBadInputsRuleSet (Log4JRCE included, no override) as rule aws-known-bad-inputs; checkov does not resolve it through the dynamic blocks of the same web ACL.
  enabled         = true
  comment         = "${var.name} API (WAF in front of the HTTP API)"
  is_ipv6_enabled = true
  http_version    = "http2and3"
  price_class     = var.price_class
  aliases         = local.custom_domain ? [var.domain_name] : []
  web_acl_id      = aws_wafv2_web_acl.api.arn

  origin {
    origin_id   = local.origin_id
    domain_name = var.origin_domain_name

    # Proof that a request came through CloudFront (and so through the WAF): the api
    # refuses any request without it.
    custom_header {
      name  = "x-envplane-origin"
      value = var.origin_secret_value
    }

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
    target_origin_id           = local.origin_id
    viewer_protocol_policy     = "https-only"
    allowed_methods            = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = data.aws_cloudfront_cache_policy.caching_disabled.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.all_viewer_except_host.id
    response_headers_policy_id = data.aws_cloudfront_response_headers_policy.security_headers.id
    compress                   = false
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
