# The module for one account and region: tens of databases whose master secrets are named
# dp-sec-db-ue1-<app>-master_user-<env> and whose user secrets are named
# dp-sec-db-ue1-users/<app>-<user>-<env> (a prefix of their own, which no master secret
# starts with), PostgreSQL and MariaDB rotation deployed from the Serverless Application
# Repository.
#
#   curl -fsSLO https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
#   bash build.sh --arch arm64 --python 3.13 --ca-bundle global-bundle.pem
#   cd deploy/terraform/examples/basic
#   terraform init && terraform validate
#   terraform plan -out=tfplan      # read it: what will be created, changed, destroyed
#   terraform apply tfplan          # applies exactly that plan

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "rds_initializer" {
  source = "../.."

  function_name = "rds-initializer"
  zip_path      = "${path.module}/../../../../dist/rds-initializer-arm64.zip"
  architecture  = "arm64"
  runtime       = "python3.13"

  subnet_ids         = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  security_group_ids = ["sg-0123456789abcdef0"]

  master_secret_arns = [
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:dp-sec-db-ue1-af-activation-master_user-dev-??????",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:dp-sec-db-ue1-billing-master_user-dev-??????",
  ]
  user_secret_name_prefix = "dp-sec-db-ue1-users/"
  kms_key_arns            = ["arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"]

  rotation_engines           = ["postgres", "mariadb"]
  rotation_semantic_version  = "1.1.670"
  rotation_master_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dp-sec-db-ue1-*-master_user-*"

  log_retention_days = 365
  environment = {
    LOG_LEVEL = "INFO"
  }
  tags = {
    team = "data-platform"
  }
}

output "function_name" {
  value = module.rds_initializer.function_name
}

output "rotation_lambda_arns" {
  value = module.rds_initializer.rotation_lambda_arns
}
