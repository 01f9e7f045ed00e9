"""The Terraform module run by Terraform itself: `init` from the local provider mirror, `fmt`,
`validate`, and the deploy steps of the README (`plan -out`, `apply` of that plan) against moto
over HTTP, then `destroy`.

The example (deploy/terraform/examples/basic) is planned as written, rotation functions
included. It is applied only without them: moto does not serve the Serverless Application
Repository (`CreateCloudFormationChangeSet` answers 500), which
`aws_serverlessapplicationrepository_cloudformation_stack` needs, so the applied root gives
the rotation function's ARN instead (`rotation_lambda_arns`), which keeps the role's
`lambda:InvokeFunction` statement in what is applied.

Terraform and the hashicorp/aws provider come with the machine (docs/development.md says
where); a machine without them fails here, loudly, as a missing PostgreSQL does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import boto3
import pytest
from conftest import ROOT

MODULE = ROOT / "deploy" / "terraform"
EXAMPLE = Path("examples") / "basic"
PLUGIN_DIR = Path(os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins"))
PROVIDER = PLUGIN_DIR / "registry.terraform.io" / "hashicorp" / "aws"
FUNCTION = "rds-initializer-tf-test"

# Every service the module's resources and data sources call, pointed at moto.
ENDPOINTS = ("sts", "iam", "lambda", "cloudwatchlogs", "ec2", "secretsmanager", "kms")

APPLIED_ROOT = """\
module "rds_initializer" {
  source = "../deploy/terraform"

  function_name = "%(function)s"
  zip_path      = "${path.module}/../dist/rds-initializer-arm64.zip"
  architecture  = "arm64"
  runtime       = "python3.13"

  subnet_ids         = ["subnet-0123456789abcdef0"]
  security_group_ids = ["sg-0123456789abcdef0"]

  master_secret_arns = [
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:dp-sec-db-ue1-af-master_user-dev-??????",
  ]
  user_secret_name_prefix = "dp-sec-db-ue1-"
  kms_key_arns = [
    "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
  ]

  rotation_lambda_arns = {
    postgres = "arn:aws:lambda:us-east-1:123456789012:function:dp-rotation-postgres-multi-user"
  }
  environment = { LOG_LEVEL = "INFO" }
}

output "function_name" {
  value = module.rds_initializer.function_name
}
"""


def provider_override(url: str) -> str:
    endpoints = "\n".join(f'    {name} = "{url}"' for name in ENDPOINTS)
    return f"""\
provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {{
{endpoints}
  }}
}}
"""


@pytest.fixture(scope="module")
def terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail(
            "terraform is not on PATH: this machine kind ships Terraform 1.11 in /usr/local/bin "
            "(docs/development.md)"
        )
    if not PROVIDER.is_dir():
        pytest.fail(
            f"no hashicorp/aws provider under {PLUGIN_DIR} (TF_PLUGIN_DIR): "
            "`find / -maxdepth 6 -path '*registry.terraform.io/hashicorp/aws'` finds it"
        )
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The repository's layout, as far as Terraform sees it: deploy/terraform (with its
    example) and dist/, where the example finds the zip from build.sh."""
    root = tmp_path_factory.mktemp("terraform")
    shutil.copytree(
        MODULE, root / "deploy" / "terraform", ignore=shutil.ignore_patterns(".terraform*")
    )
    (root / "dist").mkdir()
    with zipfile.ZipFile(root / "dist" / "rds-initializer-arm64.zip", "w") as archive:
        archive.write(ROOT / "deploy" / "lambda_function.py", "lambda_function.py")
    return root


def run(terraform: str, directory: Path, *args: str, url: str | None = None) -> str:
    """`terraform -chdir=DIRECTORY ARGS`, as the README runs it; fails on a non-zero exit."""
    env = {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,  # no ~/.terraformrc: the plugin dir is all it uses
    }
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(key, None)
    if url:
        env["AWS_ENDPOINT_URL"] = url
    done = subprocess.run(  # noqa: S603 - terraform with the test's own arguments
        [terraform, f"-chdir={directory}", *args, "-no-color"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"terraform {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_module_is_formatted_as_terraform_fmt_writes_it(terraform, workdir):
    run(terraform, workdir / "deploy" / "terraform", "fmt", "-check", "-recursive")


def test_the_readme_deploys_with_the_steps_this_test_runs():
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("## Deploy\n")[1].split("```")[1]
    for step in ("init", "validate", "plan -out=tfplan", "apply tfplan"):
        assert f"terraform -chdir=$tf {step}" in deploy, step


def test_the_example_initialises_validates_and_plans_against_moto(terraform, workdir, moto_url):
    example = workdir / "deploy" / "terraform" / EXAMPLE
    (example / "moto_override.tf").write_text(provider_override(moto_url))
    run(terraform, example, "init", f"-plugin-dir={PLUGIN_DIR}")
    run(terraform, example, "validate")
    plan = run(terraform, example, "plan", "-out=tfplan", url=moto_url)

    created = sorted(re.findall(r"^  # (\S+) will be created$", plan, re.MULTILINE))
    assert created == [
        "module.rds_initializer.aws_cloudwatch_log_group.this",
        "module.rds_initializer.aws_iam_role.this",
        "module.rds_initializer.aws_iam_role_policy.this",
        "module.rds_initializer.aws_lambda_function.this",
        'module.rds_initializer.aws_serverlessapplicationrepository_cloudformation_stack.rotation["mariadb"]',
        'module.rds_initializer.aws_serverlessapplicationrepository_cloudformation_stack.rotation["postgres"]',
    ]
    function = plan.split("aws_lambda_function.this will be created")[1].split("\n    }\n")[0]
    for attribute in (
        r'handler\s+= "lambda_function.lambda_handler"',
        r'runtime\s+= "python3.13"',
        r"timeout\s+= 900",
        r'architectures\s+= \[\s+\+ "arm64",',
    ):
        assert re.search(attribute, function), attribute
    assert "Plan: 6 to add, 0 to change, 0 to destroy." in plan


def test_the_module_applies_and_destroys_against_moto(terraform, workdir, moto_url):
    root = workdir / "applied"
    root.mkdir()
    (root / "main.tf").write_text(APPLIED_ROOT % {"function": FUNCTION})
    (root / "provider.tf").write_text(provider_override(moto_url))
    run(terraform, root, "init", f"-plugin-dir={PLUGIN_DIR}")
    run(terraform, root, "plan", "-out=tfplan", url=moto_url)
    run(terraform, root, "apply", "tfplan", url=moto_url)

    lambda_client = boto3.client("lambda", region_name="us-east-1", endpoint_url=moto_url)
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_url)
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=moto_url)
    function = lambda_client.get_function(FunctionName=FUNCTION)["Configuration"]
    assert function["Handler"] == "lambda_function.lambda_handler"
    assert function["Timeout"] == 900
    assert function["Environment"]["Variables"]["ROTATION_LAMBDA_ARN_POSTGRES"].endswith(
        ":function:dp-rotation-postgres-multi-user"
    )
    policy = iam.get_role_policy(RoleName=FUNCTION, PolicyName=f"{FUNCTION}-execution")
    sids = {statement["Sid"] for statement in policy["PolicyDocument"]["Statement"]}
    assert {"MasterSecrets", "UserSecrets", "RotationFunctions", "OwnLogGroup"} <= sids
    (group,) = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{FUNCTION}")["logGroups"]
    assert group["retentionInDays"] == 365

    second = run(terraform, root, "plan", "-detailed-exitcode", url=moto_url)
    assert "No changes." in second

    run(terraform, root, "destroy", "-auto-approve", url=moto_url)
    assert all(f["FunctionName"] != FUNCTION for f in lambda_client.list_functions()["Functions"])
    assert all(role["RoleName"] != FUNCTION for role in iam.list_roles()["Roles"])
