# terraform test (Terraform 1.7+) of the regional root's own checks, with a mocked AWS
# provider: plans only. The module's behaviour is tested in module.tftest.hcl.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_availability_zones" {
    defaults = {
      names    = ["eu-central-1a", "eu-central-1b"]
      zone_ids = ["euc1-az1", "euc1-az2"]
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  mock_data "aws_region" {
    defaults = {
      name = "eu-central-1"
    }
  }
}

variables {
  region             = "eu-central-1"
  home_region        = "eu-west-1"
  regions            = ["eu-west-1", "eu-central-1"]
  table_name         = "envplane"
  table_arns         = { eu-west-1 = "arn:aws:dynamodb:eu-west-1:123456789012:table/envplane", eu-central-1 = "arn:aws:dynamodb:eu-central-1:123456789012:table/envplane" }
  kms_key_arns       = { eu-west-1 = "arn:aws:kms:eu-west-1:123456789012:key/mrk-1", eu-central-1 = "arn:aws:kms:eu-central-1:123456789012:key/mrk-1" }
  origin_secret_arns = { eu-west-1 = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:envplane/origin-verify-AbCdEf", eu-central-1 = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:envplane/origin-verify-AbCdEf" }
  public_api_url     = "https://d111111abcdef8.cloudfront.net"
  egress_ips         = ["198.51.100.7"]
  function_packages = {
    api         = "tests/fixtures/bootstrap.zip"
    deployer    = "tests/fixtures/bootstrap.zip"
    task-events = "tests/fixtures/bootstrap.zip"
    reaper      = "tests/fixtures/bootstrap.zip"
    webhook     = "tests/fixtures/bootstrap.zip"
    reporter    = "tests/fixtures/bootstrap.zip"
  }
  runner_image = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/envplane-runner:0.1.0"
}

run "passive_region_plans_without_the_public_url" {
  command = plan

  variables {
    active               = false
    artifact_replication = false
    public_api_url       = ""
  }

  assert {
    condition     = output.sandbox_api_url == "https://public-url-pending.invalid"
    error_message = "Before the edge exists a passive region gets an unresolvable placeholder, never the execute-api endpoint."
  }

  assert {
    condition     = output.active == false
    error_message = "The region is passive."
  }
}

run "active_region_uses_the_public_url" {
  command = plan

  variables {
    active = true
  }

  assert {
    condition     = output.sandbox_api_url == "https://d111111abcdef8.cloudfront.net"
    error_message = "ENVPLANE_API_URL is the protected public URL."
  }
}
