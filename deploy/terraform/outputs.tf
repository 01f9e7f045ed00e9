output "function_name" {
  description = "Name of the function: the first argument of deploy/invoke.sh."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the function (the resource to grant lambda:InvokeFunction on to the pipeline)."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "The function's log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "rotation_lambda_arns" {
  description = "The rotation function of each engine, as passed in ROTATION_LAMBDA_ARN_<ENGINE>."
  value       = local.rotation_lambda_arns
}
