# RDS Initializer: the function, its log group, its least-privilege role and, optionally, the
# AWS multi-user rotation functions of the engines in use. See README.md in this directory.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id
  account_id = data.aws_caller_identity.current.account_id

  # Every user secret the function may manage: its name starts with the prefix (AWS appends
  # -<6 random characters> to the name in the ARN, which the * covers), and it carries the tag
  # the function gives every secret it makes (TOOL in deploy/lambda_function.py).
  user_secrets_arn = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.user_secret_name_prefix}*"
  tool_tag_key     = "managed-by"
  tool_tag_value   = "rds-initializer"

  # The names of the master secrets (what follows ":secret:" in their ARNs).
  master_secret_names = [for arn in var.master_secret_arns : element(split(":secret:", arn), 1)]

  # The Serverless Application Repository account that publishes the rotation applications.
  rotation_publisher = {
    "aws"        = "arn:aws:serverlessrepo:us-east-1:297356227824"
    "aws-cn"     = "arn:aws-cn:serverlessrepo:cn-north-1:193023089310"
    "aws-us-gov" = "arn:aws-us-gov:serverlessrepo:us-gov-west-1:023102451235"
  }
  rotation_applications = {
    postgres = "SecretsManagerRDSPostgreSQLRotationMultiUser"
    mysql    = "SecretsManagerRDSMySQLRotationMultiUser"
    mariadb  = "SecretsManagerRDSMariaDBRotationMultiUser"
  }
  secrets_manager_endpoint   = coalesce(var.secrets_manager_endpoint, "https://secretsmanager.${local.region}.${data.aws_partition.current.dns_suffix}")
  rotation_master_secret_arn = coalesce(var.rotation_master_secret_arn, var.master_secret_arns[0])

  # The rotation function of each engine: deployed here, or given.
  rotation_lambda_arns = merge(
    var.rotation_lambda_arns,
    { for engine, stack in aws_serverlessapplicationrepository_cloudformation_stack.rotation : engine => stack.outputs["RotationLambdaARN"] },
  )
  rotation_engines_in_use = toset(concat(keys(var.rotation_lambda_arns), tolist(var.rotation_engines)))

  environment = merge(
    { for engine, arn in local.rotation_lambda_arns : "ROTATION_LAMBDA_ARN_${upper(engine)}" => arn },
    var.environment,
  )
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "LambdaAssumesTheRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.function_name
  description        = "Execution role of ${var.function_name}: its master secrets, its user secrets, its log group"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
  tags               = var.tags
}

# Exactly the calls deploy/lambda_function.py makes (tests/test_terraform.py compares them).
data "aws_iam_policy_document" "execution" {
  # Secrets.master_secret: the master credentials, read only.
  statement {
    sid       = "MasterSecrets"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.master_secret_arns
  }

  # Secrets.read_states: reading the user secrets under the prefix. Without a tag condition:
  # a secret that does not exist yet has no tags, and IAM would answer AccessDenied where the
  # function must learn ResourceNotFound (and a secret somebody else made is read, then
  # refused by the function with a clear message, never written).
  statement {
    sid    = "UserSecrets"
    effect = "Allow"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
    ]
    resources = [local.user_secrets_arn]
  }

  # SecretWriter: a user secret is created only with the tool's tag (the tag is part of the
  # request), and every other write needs the tag on the secret: the role cannot change a
  # secret under the prefix that the tool did not make, a master secret included.
  statement {
    sid       = "CreateTaggedUserSecrets"
    effect    = "Allow"
    actions   = ["secretsmanager:CreateSecret"]
    resources = [local.user_secrets_arn]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.tool_tag_key}"
      values   = [local.tool_tag_value]
    }
  }

  statement {
    sid    = "WriteTaggedUserSecrets"
    effect = "Allow"
    actions = [
      "secretsmanager:CancelRotateSecret",
      "secretsmanager:DeleteSecret",
      "secretsmanager:PutSecretValue",
      "secretsmanager:RestoreSecret",
      "secretsmanager:RotateSecret",
      "secretsmanager:TagResource",
      "secretsmanager:UpdateSecret", # a changed kms_key_id, applied to existing secrets
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = [local.user_secrets_arn]

    condition {
      test     = "StringEquals"
      variable = "secretsmanager:ResourceTag/${local.tool_tag_key}"
      values   = [local.tool_tag_value]
    }
  }

  # These two have no resource-level permissions: AWS accepts only "*". BatchGetSecretValue
  # still needs GetSecretValue on each secret it returns (granted above).
  statement {
    sid    = "NoResourceLevelPermissions"
    effect = "Allow"
    actions = [
      "secretsmanager:BatchGetSecretValue",
      "secretsmanager:GetRandomPassword",
      "secretsmanager:ListSecrets", # a delete that names no secret finds it by its tags
    ]
    resources = ["*"]
  }

  # A prefix that happens to match a master secret must not let the function change it.
  statement {
    sid    = "MasterSecretsStayReadOnly"
    effect = "Deny"
    actions = [
      "secretsmanager:CancelRotateSecret",
      "secretsmanager:CreateSecret",
      "secretsmanager:DeleteSecret",
      "secretsmanager:PutSecretValue",
      "secretsmanager:RestoreSecret",
      "secretsmanager:RotateSecret",
      "secretsmanager:TagResource",
      "secretsmanager:UpdateSecret", # a changed kms_key_id, applied to existing secrets
      "secretsmanager:UpdateSecretVersionStage",
    ]
    resources = var.master_secret_arns
  }

  # Customer managed keys of the secrets, used only through Secrets Manager: encrypt new
  # values (GenerateDataKey), read them (Decrypt), and re-encrypt a secret's versions when
  # kms_key_id changes (UpdateSecret: Encrypt with the new key, Decrypt with the old one).
  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "SecretsKeys"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
      resources = var.kms_key_arns

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  # RotateSecret checks that its caller may invoke the rotation function.
  dynamic "statement" {
    for_each = length(local.rotation_engines_in_use) > 0 ? [1] : []
    content {
      sid       = "RotationFunctions"
      effect    = "Allow"
      actions   = ["lambda:InvokeFunction"]
      resources = values(local.rotation_lambda_arns)
    }
  }

  # The function's network interfaces in the VPC: what AWSLambdaVPCAccessExecutionRole grants
  # (without its logs:*), the writes limited to this account's EC2 resources in this region.
  statement {
    sid    = "NetworkInterfaces"
    effect = "Allow"
    actions = [
      "ec2:AssignPrivateIpAddresses",
      "ec2:CreateNetworkInterface",
      "ec2:DeleteNetworkInterface",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"]
  }

  # EC2 accepts only "*" for its Describe actions.
  statement {
    sid    = "DescribeNetwork"
    effect = "Allow"
    actions = [
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
    ]
    resources = ["*"]
  }

  # Its own log group only (created above, so no logs:CreateLogGroup).
  statement {
    sid       = "OwnLogGroup"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.function_name}-execution"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.execution.json

  lifecycle {
    precondition {
      condition     = alltrue([for name in local.master_secret_names : !startswith(name, var.user_secret_name_prefix)])
      error_message = "user_secret_name_prefix must not be the start of a master secret's name: give the user secrets a prefix of their own."
    }
  }
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing would need xray:PutTraceSegments on "*" for a function whose every run is already logged and reported in full.
  #checkov:skip=CKV_AWS_116:No dead-letter queue: the function is only invoked synchronously (deploy/invoke.sh), where the caller gets the error itself.
  #checkov:skip=CKV_AWS_173:The environment holds no secret, only rotation function ARNs and settings; Lambda encrypts it at rest with its own key.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the zip from build.sh is not signed with; the zip's hash is pinned by source_code_hash.
  function_name                  = var.function_name
  description                    = "Creates, updates and deletes database users of RDS PostgreSQL, MySQL and MariaDB, with their credentials in Secrets Manager"
  role                           = aws_iam_role.this.arn
  handler                        = "lambda_function.lambda_handler"
  runtime                        = var.runtime
  architectures                  = [var.architecture]
  filename                       = var.zip_path
  source_code_hash               = filebase64sha256(var.zip_path)
  timeout                        = var.timeout
  memory_size                    = var.memory_size
  reserved_concurrent_executions = var.reserved_concurrent_executions

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  dynamic "environment" {
    for_each = length(local.environment) > 0 ? [1] : []
    content {
      variables = local.environment
    }
  }

  tags = var.tags

  # The log group first, or Lambda would create it without retention on the first run.
  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]
}

# The AWS multi-user rotation function of each engine in var.rotation_engines, from the
# Serverless Application Repository (the stack is named serverlessrepo-<name> in CloudFormation).
resource "aws_serverlessapplicationrepository_cloudformation_stack" "rotation" {
  for_each = var.rotation_engines

  name             = "${var.function_name}-rotation-${each.key}"
  application_id   = "${local.rotation_publisher[local.partition]}:applications/${local.rotation_applications[each.key]}"
  semantic_version = var.rotation_semantic_version
  capabilities     = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]
  parameters = merge(
    {
      endpoint            = local.secrets_manager_endpoint
      functionName        = "${var.function_name}-rotation-${each.key}"
      vpcSubnetIds        = join(",", var.subnet_ids)
      vpcSecurityGroupIds = join(",", var.security_group_ids)
      masterSecretArn     = local.rotation_master_secret_arn
    },
    length(var.kms_key_arns) > 0 ? { kmsKeyArn = var.kms_key_arns[0] } : {},
  )
  tags = var.tags
}
