terraform {
  # Kept to Terraform 1.0 syntax: no optional() object attributes, no moved/import
  # blocks, no preconditions (1.2), no startswith()/endswith() (1.3). The tests in
  # tests/*.tftest.hcl need Terraform 1.7 or later (mock providers); they are not part
  # of a plan or an apply.
  required_version = ">= 1.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_dynamodb_table_replica's deletion_protection_enabled and the
      # aws_secretsmanager_random_password data source are 5.x additions; validated with
      # 5.100.0 only.
      version = ">= 5.30, < 6.0"
    }
  }
}
