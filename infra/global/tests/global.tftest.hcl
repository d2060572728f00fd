# terraform test (Terraform 1.7+) of the global root with a mocked AWS provider: plans
# only, nothing is created and no AWS API is called. Run by scripts/check-infra.
# override_during = plan (mock values known at plan time) needs Terraform 1.9 or later.

mock_provider "aws" {
  alias           = "primary"
  override_during = plan

  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
      arn        = "arn:aws:sts::123456789012:assumed-role/terraform/session"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_iam_session_context" {
    defaults = {
      issuer_arn = "arn:aws:iam::123456789012:role/terraform"
    }
  }

  mock_data "aws_secretsmanager_secret_version" {
    defaults = {
      secret_string = "a-test-value-not-a-secret"
    }
  }

  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:eu-west-1:123456789012:key/mrk-1"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:envplane/origin-verify-AbCdEf"
    }
  }

  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/envplane"
    }
  }
}

mock_provider "aws" {
  alias           = "secondary"
  override_during = plan

  mock_resource "aws_kms_replica_key" {
    defaults = {
      arn = "arn:aws:kms:eu-central-1:123456789012:key/mrk-1"
    }
  }
}

mock_provider "aws" {
  alias           = "edge"
  override_during = plan

  mock_resource "aws_kms_replica_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/mrk-1"
    }
  }

  mock_resource "aws_wafv2_ip_set" {
    defaults = {
      arn = "arn:aws:wafv2:us-east-1:123456789012:global/ipset/envplane-sandbox-egress/1"
    }
  }

  mock_resource "aws_wafv2_web_acl" {
    defaults = {
      arn = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/envplane-api/1"
    }
  }

  mock_resource "aws_cloudwatch_log_group" {
    defaults = {
      arn = "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-envplane-api"
    }
  }

  mock_resource "aws_cloudfront_distribution" {
    defaults = {
      domain_name    = "d111111abcdef8.cloudfront.net"
      hosted_zone_id = "Z2FDTNDATAQYW2"
    }
  }

  mock_data "aws_cloudfront_cache_policy" {
    defaults = {
      id = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    }
  }

  mock_data "aws_cloudfront_response_headers_policy" {
    defaults = {
      id = "67f7725c-6f97-4210-82d7-5512b31e9d03"
    }
  }

  mock_data "aws_cloudfront_origin_request_policy" {
    defaults = {
      id = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
    }
  }
}

run "first_pass_has_no_edge_yet" {
  command = plan

  assert {
    condition     = length(module.edge) == 0 && output.api_url == ""
    error_message = "Without the regions' reports there is no origin: no edge yet."
  }

  assert {
    condition     = aws_dynamodb_table_replica.secondary.deletion_protection_enabled == true
    error_message = "The table replica has deletion protection."
  }

  assert {
    condition     = aws_ecr_replication_configuration.runner.replication_configuration[0].rule[0].destination[0].region == "eu-central-1"
    error_message = "The runner image is replicated to the secondary region."
  }

  assert {
    condition     = aws_kms_key.main.multi_region && aws_kms_key.main.enable_key_rotation
    error_message = "The platform key is multi-region with rotation on."
  }

  assert {
    condition     = output.region_tfvars.home_region == "eu-west-1" && output.region_tfvars.regions == ["eu-west-1", "eu-central-1"]
    error_message = "The home region is eu-west-1 (not us-east-1) by default."
  }

  assert {
    condition     = output.region_tfvars.origin_secret_arns["eu-central-1"] == "arn:aws:secretsmanager:eu-central-1:123456789012:secret:envplane/origin-verify-AbCdEf"
    error_message = "The secondary region reads the secret's replica (same name, its own region)."
  }
}

run "second_pass_builds_the_edge" {
  command = plan

  variables {
    regions = {
      eu-west-1 = {
        api_endpoint              = "https://abc123.execute-api.eu-west-1.amazonaws.com"
        origin_target_domain_name = ""
        origin_target_zone_id     = ""
        egress_ips                = ["203.0.113.10", "203.0.113.11"]
      }
      eu-central-1 = {
        api_endpoint              = "https://def456.execute-api.eu-central-1.amazonaws.com"
        origin_target_domain_name = ""
        origin_target_zone_id     = ""
        egress_ips                = ["198.51.100.7"]
      }
    }
  }

  assert {
    condition     = length(module.edge) == 1
    error_message = "With the regions reported, the edge is built."
  }

  assert {
    condition     = join(",", output.region_tfvars.egress_ips) == "198.51.100.7,203.0.113.10,203.0.113.11"
    error_message = "Both regions' egress addresses, sorted, go back to the regions."
  }

  assert {
    condition     = output.region_tfvars.public_api_url == "https://d111111abcdef8.cloudfront.net"
    error_message = "Without a custom domain the public URL is CloudFront's."
  }

  assert {
    condition     = length(aws_route53_record.origin) == 0
    error_message = "No DNS without domain_name and hosted_zone_id."
  }
}

run "dns_failover_with_a_domain" {
  command = plan

  variables {
    domain_name     = "api.envplane.example.com"
    hosted_zone_id  = "Z0123456789ABCDEFGHIJ"
    certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    regions = {
      eu-west-1 = {
        api_endpoint              = "https://abc123.execute-api.eu-west-1.amazonaws.com"
        origin_target_domain_name = "d-abc.execute-api.eu-west-1.amazonaws.com"
        origin_target_zone_id     = "ZLY8HYME6SFDD"
        egress_ips                = ["203.0.113.10"]
      }
      eu-central-1 = {
        api_endpoint              = "https://def456.execute-api.eu-central-1.amazonaws.com"
        origin_target_domain_name = "d-def.execute-api.eu-central-1.amazonaws.com"
        origin_target_zone_id     = "Z1U9ULNL0V5AJ3"
        egress_ips                = ["198.51.100.7"]
      }
    }
  }

  assert {
    condition     = aws_route53_record.origin["eu-west-1"].failover_routing_policy[0].type == "PRIMARY" && aws_route53_record.origin["eu-central-1"].failover_routing_policy[0].type == "SECONDARY"
    error_message = "The home region is PRIMARY, the other SECONDARY."
  }

  assert {
    condition     = aws_route53_health_check.region["eu-central-1"].fqdn == "def456.execute-api.eu-central-1.amazonaws.com" && aws_route53_health_check.region["eu-central-1"].resource_path == "/health"
    error_message = "Each region's health check calls its own /health."
  }

  assert {
    condition     = output.region_tfvars.origin_domain_name == "origin.api.envplane.example.com" && output.region_tfvars.public_api_url == "https://api.envplane.example.com"
    error_message = "CloudFront's origin is the failover name; the public URL is the custom domain."
  }
}
