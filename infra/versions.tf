terraform {
  # Kept to Terraform 1.0 syntax: no optional() object attributes, no moved/import
  # blocks, no preconditions (1.2), no startswith()/endswith() (1.3).
  required_version = ">= 1.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.30"
    }
  }
}
