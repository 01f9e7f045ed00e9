variable "function_name" {
  description = "Name of the Lambda function (and of its role and log group)."
  type        = string
  default     = "rds-initializer"
}

variable "zip_path" {
  description = "Path of the zip built by build.sh: dist/rds-initializer-<architecture>.zip."
  type        = string
}

variable "architecture" {
  description = "Lambda architecture; must match the zip (build.sh --arch)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "runtime" {
  description = "Lambda Python runtime; must match the zip (build.sh --python 3.12 or 3.13)."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.runtime)
    error_message = "runtime must be python3.12 or python3.13."
  }
}

variable "timeout" {
  description = "Seconds a run may take (Lambda's maximum is 900); invoke.sh waits as long."
  type        = number
  default     = 900
}

variable "memory_size" {
  description = "Memory of the function in MB (CPU grows with it)."
  type        = number
  default     = 512
}

variable "subnet_ids" {
  description = "Private subnets from which the function reaches the databases and Secrets Manager."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the function: outbound to the database ports and to Secrets Manager (443)."
  type        = list(string)
}

variable "master_secret_arns" {
  description = "ARNs of the master secrets the function reads (GetSecretValue only). A trailing -?????? or * matches the random suffix AWS adds."
  type        = list(string)

  validation {
    condition     = length(var.master_secret_arns) > 0
    error_message = "master_secret_arns needs at least one ARN."
  }
}

variable "user_secret_name_prefix" {
  description = "Every user secret's name starts with this prefix (user_secret_name in the events); the function may manage only those secrets."
  type        = string

  validation {
    condition     = length(var.user_secret_name_prefix) >= 3 && !strcontains(var.user_secret_name_prefix, "*")
    error_message = "user_secret_name_prefix must be at least 3 characters, without *: it bounds what the function may write."
  }
}

variable "kms_key_arns" {
  description = "Customer managed KMS keys of the user secrets (the events' kms_key_id) and of the master secrets. Empty: the secrets use the aws/secretsmanager key, which needs no grant."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Retention of the function's log group, in days."
  type        = number
  default     = 365
}

variable "log_kms_key_arn" {
  description = "KMS key that encrypts the log group (its key policy must allow CloudWatch Logs); null: CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "environment" {
  description = "More environment variables: DB_SSL_MODE, DB_CONNECT_TIMEOUT, DB_LOCK_TIMEOUT, LOG_LEVEL, SECRETS_WRITES_PER_SECOND, SECRETS_READS_PER_SECOND (see the README's Configuration)."
  type        = map(string)
  default     = {}
}

variable "rotation_engines" {
  description = "Engines whose AWS multi-user rotation function this module deploys from the Serverless Application Repository: any of postgres, mysql, mariadb. Its ARN is passed as ROTATION_LAMBDA_ARN_<ENGINE>."
  type        = set(string)
  default     = []

  validation {
    condition     = length(setsubtract(var.rotation_engines, ["postgres", "mysql", "mariadb"])) == 0
    error_message = "rotation_engines may hold only postgres, mysql and mariadb."
  }
}

variable "rotation_semantic_version" {
  description = "Version of the rotation applications to deploy (they are republished often: pin it); null deploys the latest."
  type        = string
  default     = null
}

variable "rotation_master_secret_arn" {
  description = "The master secret ARN (or ARN pattern with *) the rotation functions may read; default: the first of master_secret_arns."
  type        = string
  default     = null
}

variable "rotation_lambda_arns" {
  description = "Rotation functions deployed elsewhere, by engine (postgres, mysql, mariadb): passed as ROTATION_LAMBDA_ARN_<ENGINE>, and the function may invoke them. An engine in rotation_engines wins."
  type        = map(string)
  default     = {}
}

variable "secrets_manager_endpoint" {
  description = "Secrets Manager endpoint of the rotation functions; null: the region's public endpoint (a VPC endpoint with private DNS answers it too)."
  type        = string
  default     = null
}

variable "reserved_concurrent_executions" {
  description = "Reserved concurrency of the function; -1: none reserved (it takes from the account's pool)."
  type        = number
  default     = -1
}

variable "tags" {
  description = "Tags of every resource the module creates."
  type        = map(string)
  default     = {}
}
