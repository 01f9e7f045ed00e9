"""The Terraform module in deploy/terraform: every .tf file parses (python-hcl2), checkov finds
no failure, and the role grants exactly the Secrets Manager calls the handler makes, found in
the handler's source, so that neither the code nor the policy can drift from the other.

What is checked here is the HCL as written; tests/test_terraform_cli.py runs Terraform itself."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import boto3
import hcl2
import pytest
from conftest import ROOT, tool

MODULE = ROOT / "deploy" / "terraform"
HANDLER = ROOT / "deploy" / "lambda_function.py"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

# AWS's Service Authorization Reference: these Secrets Manager actions have no resource-level
# permissions, so a policy can grant them only on "*". Every other one is granted on the secrets.
WITHOUT_RESOURCE_LEVEL = {
    "secretsmanager:BatchGetSecretValue",
    "secretsmanager:GetRandomPassword",
    "secretsmanager:ListSecrets",
}
# Secrets Manager calls KMS for the caller: writing a value needs GenerateDataKey on the
# secret's key, reading one needs Decrypt.
WRITES_A_VALUE = {"CreateSecret", "PutSecretValue"}
READS_A_VALUE = {"GetSecretValue", "BatchGetSecretValue"}


def unquote(value):
    """python-hcl2 8 keeps the quotes of string literals ('"x"'); expressions are '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items()}
    return value


@cache
def parsed(path: Path) -> dict:
    with path.open() as source:
        return unquote(hcl2.load(source))


def tf_files() -> list[Path]:
    return sorted(MODULE.rglob("*.tf"))


def blocks(kind: str, path: Path = MODULE / "main.tf") -> dict[tuple[str, str], dict]:
    """resource/data blocks of a file by (type, name)."""
    found = {}
    for entry in parsed(path).get(kind, []):
        for type_, named in entry.items():
            for name, body in named.items():
                found[(type_, name)] = body
    return found


def statements() -> dict[str, dict]:
    """The execution role's policy statements by sid, dynamic ones included."""
    document = blocks("data")[("aws_iam_policy_document", "execution")]
    found = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        found += dynamic["statement"]["content"]
    by_sid = {s["sid"]: s for s in found}
    assert len(by_sid) == len(found), "every statement has its own sid"
    return by_sid


def granted(prefix: str) -> set[str]:
    return {
        action
        for statement in statements().values()
        if statement["effect"] == "Allow"
        for action in statement["actions"]
        if action.startswith(prefix)
    }


def handler_operations() -> set[str]:
    """Every Secrets Manager operation the handler calls, found in its source: calls on a
    boto3 client (`<...>.client.get_secret_value(...)`, paginators included) and writes
    through the rate limiter (`<...>aws.write("create_secret", ...)`)."""
    operations = set()
    for node in ast.walk(ast.parse(HANDLER.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, ast.unparse(node.func.value)
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) else None
        if method == "write" and re.search(r"(^|\.)(secrets|aws)$", receiver):
            assert isinstance(literal, str), f"a write whose operation is not a literal: {receiver}"
            operations.add(literal)
        elif re.search(r"(^|\.)client$", receiver):
            operations.add(literal if method == "get_paginator" else method)
    return operations


def handler_actions() -> set[str]:
    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",  # noqa: S106 - no call is made
    )
    api = client.meta.method_to_api_mapping
    unknown = handler_operations() - set(api)
    assert not unknown, f"not Secrets Manager operations: {unknown}"
    return {f"secretsmanager:{api[operation]}" for operation in handler_operations()}


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(MODULE)))
def test_every_tf_file_parses(path):
    content = parsed(path)
    assert {"terraform", "variable", "output", "resource", "module"} & set(content), path


def test_the_module_has_its_files_and_an_example():
    names = {p.relative_to(MODULE).as_posix() for p in tf_files()}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names
    assert "examples/basic/main.tf" in names
    example = parsed(MODULE / "examples" / "basic" / "main.tf")["module"][0]["rds_initializer"]
    assert example["source"] == "../.."


def test_the_source_scan_finds_the_calls_it_must():
    """The derivation is not vacuous: the calls every run makes are found."""
    assert {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:GetRandomPassword",
    } <= handler_actions()


def test_the_role_grants_exactly_the_secrets_manager_calls_of_the_handler():
    assert granted("secretsmanager:") == handler_actions()


USER_SECRET_STATEMENTS = ("UserSecrets", "CreateTaggedUserSecrets", "WriteTaggedUserSecrets")


def test_secrets_manager_actions_are_granted_on_the_narrowest_resources():
    by_sid = statements()
    master, anywhere = by_sid["MasterSecrets"], by_sid["NoResourceLevelPermissions"]
    assert master["actions"] == ["secretsmanager:GetSecretValue"]
    assert master["resources"] == "${var.master_secret_arns}"
    for sid in USER_SECRET_STATEMENTS:
        assert by_sid[sid]["resources"] == ["${local.user_secrets_arn}"]
        assert not set(by_sid[sid]["actions"]) & WITHOUT_RESOURCE_LEVEL
    user_secrets_arn = parsed(MODULE / "main.tf")["locals"][0]["user_secrets_arn"]
    assert user_secrets_arn.endswith(":secret:${var.user_secret_name_prefix}*")
    assert anywhere["resources"] == ["*"]
    assert set(anywhere["actions"]) <= WITHOUT_RESOURCE_LEVEL
    # Only these statements grant Secrets Manager actions.
    others = {sid for sid, s in by_sid.items() if s["effect"] == "Allow"} - {
        "MasterSecrets",
        "NoResourceLevelPermissions",
        *USER_SECRET_STATEMENTS,
    }
    assert not any(
        a.startswith("secretsmanager:") for sid in others for a in by_sid[sid]["actions"]
    )


def handler_writes() -> set[str]:
    """The Secrets Manager actions the handler makes through its writer (`aws.write(...)`):
    every call that changes a secret."""
    operations = set()
    for node in ast.walk(ast.parse(HANDLER.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "write"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            operations.add(node.args[0].value)
    api = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",  # noqa: S106 - no call is made
    ).meta.method_to_api_mapping
    return {f"secretsmanager:{api[operation]}" for operation in operations}


def tag_condition(statement: dict) -> tuple[str, list[str]] | None:
    """(variable, values) of the statement's one StringEquals condition, with the module's
    locals resolved; None without a condition."""
    conditions = statement.get("condition", [])
    if not conditions:
        return None
    (condition,) = conditions
    assert condition["test"] == "StringEquals"
    main = parsed(MODULE / "main.tf")["locals"][0]
    variable = condition["variable"].replace("${local.tool_tag_key}", main["tool_tag_key"])
    values = [
        v.replace("${local.tool_tag_value}", main["tool_tag_value"]) for v in condition["values"]
    ]
    return variable, values


def allowed(action: str, tags: dict[str, str], request_tags: dict[str, str]) -> bool:
    """Whether the role's Allow statements on the user secrets let `action` through for a
    secret under the prefix carrying `tags`, in a request carrying `request_tags` (the
    conditions the module writes: StringEquals on one tag)."""
    for sid in USER_SECRET_STATEMENTS:
        statement = statements()[sid]
        if action not in statement["actions"]:
            continue
        condition = tag_condition(statement)
        if condition is None:
            return True
        variable, values = condition
        key = variable.split("/", 1)[1]
        held = request_tags if variable.startswith("aws:RequestTag/") else tags
        assert variable.startswith(("aws:RequestTag/", "secretsmanager:ResourceTag/"))
        if held.get(key) in values:
            return True
    return False


def test_every_write_of_the_handler_needs_the_tools_tag_and_reads_do_not():
    """The conditions follow the handler's calls: CreateSecret needs the tag in the request,
    which the handler always sends; every other write needs it on the secret, which only the
    handler puts there; a read needs none (a missing secret has no tags, and must read as
    missing)."""
    writes = handler_writes()
    reads = handler_actions() - writes - WITHOUT_RESOURCE_LEVEL
    assert "secretsmanager:CreateSecret" in writes and "secretsmanager:DeleteSecret" in writes
    assert reads == {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"}
    ours = {"managed-by": tool.TOOL}
    target = tool.Target("postgres", "h", 5432, "db", "m", "p", "arn:m", "require")
    event = tool.parse_event(
        {
            "secret_name": "m",
            "database_name": "db",
            "users": [{"db_user": "u", "user_secret_name": "s"}],
        }
    )
    assert tool.wanted_tags(event, target, "u").items() >= ours.items()
    for action in reads:
        assert allowed(action, tags={}, request_tags={})
    assert allowed("secretsmanager:CreateSecret", tags={}, request_tags=ours)
    assert not allowed("secretsmanager:CreateSecret", tags={}, request_tags={})
    assert not allowed("secretsmanager:CreateSecret", tags={}, request_tags={"managed-by": "me"})
    for action in writes - {"secretsmanager:CreateSecret"}:
        assert allowed(action, tags=ours, request_tags={}), action
        assert not allowed(action, tags={}, request_tags=ours), action  # an untagged secret
        assert not allowed(action, tags={"managed-by": "someone"}, request_tags={}), action
    assert statements()["CreateTaggedUserSecrets"]["actions"] == ["secretsmanager:CreateSecret"]
    assert set(statements()["WriteTaggedUserSecrets"]["actions"]) == writes - {
        "secretsmanager:CreateSecret"
    }


def test_the_examples_user_secret_prefix_covers_no_master_secret():
    example = parsed(MODULE / "examples" / "basic" / "main.tf")["module"][0]["rds_initializer"]
    prefix = example["user_secret_name_prefix"]
    names = [arn.split(":secret:", 1)[1] for arn in example["master_secret_arns"]]
    assert names and not any(name.startswith(prefix) for name in names)
    policy = blocks("resource")[("aws_iam_role_policy", "this")]
    (condition,) = policy["lifecycle"][0]["precondition"]
    assert "startswith(name, var.user_secret_name_prefix)" in condition["condition"]


def test_master_secrets_are_denied_every_write_the_handler_can_make():
    deny = statements()["MasterSecretsStayReadOnly"]
    assert deny["effect"] == "Deny" and deny["resources"] == "${var.master_secret_arns}"
    assert set(deny["actions"]) == handler_writes()


def test_kms_is_granted_only_on_the_configured_keys_for_what_secrets_manager_does():
    api = {action.removeprefix("secretsmanager:") for action in handler_actions()}
    wanted = set()
    if api & WRITES_A_VALUE:
        wanted.add("kms:GenerateDataKey")
    if api & READS_A_VALUE:
        wanted.add("kms:Decrypt")
    if "UpdateSecret" in api:  # a changed kms_key_id re-encrypts the versions with the new key
        wanted.add("kms:Encrypt")
    assert "KmsKeyId" in HANDLER.read_text(), "the handler creates secrets under kms_key_id"
    keys = statements()["SecretsKeys"]
    assert set(keys["actions"]) == wanted == granted("kms:")
    assert keys["resources"] == "${var.kms_key_arns}"
    assert keys["condition"][0]["variable"] == "kms:ViaService"


def test_network_and_logs_grants():
    by_sid = statements()
    assert by_sid["NetworkInterfaces"]["resources"] == [
        "arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"
    ]
    assert set(by_sid["DescribeNetwork"]["actions"]) == {
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
    }
    assert by_sid["OwnLogGroup"]["resources"] == ["${aws_cloudwatch_log_group.this.arn}:*"]
    assert "logs:CreateLogGroup" not in granted("logs:")
    group = blocks("resource")[("aws_cloudwatch_log_group", "this")]
    assert group["retention_in_days"] == "${var.log_retention_days}"


def test_rotation_functions_match_the_handlers_variables():
    """The module's SAR applications and ROTATION_LAMBDA_ARN_* names are the handler's."""
    main = parsed(MODULE / "main.tf")
    applications = main["locals"][0]["rotation_applications"]
    assert {
        engine: (f"ROTATION_LAMBDA_ARN_{engine.upper()}", app)
        for engine, app in applications.items()
    } == {
        name: (dialect.rotation_variable, dialect.rotation_template)
        for name, dialect in tool.DIALECTS.items()
    }
    environment = main["locals"][0]["environment"]
    assert '"ROTATION_LAMBDA_ARN_${upper(engine)}"' in environment
    assert "lambda:InvokeFunction" in statements()["RotationFunctions"]["actions"]


def test_the_function_settings():
    function = blocks("resource")[("aws_lambda_function", "this")]
    assert function["handler"] == "lambda_function.lambda_handler"
    assert function["architectures"] == ["${var.architecture}"]
    assert function["vpc_config"][0]["subnet_ids"] == "${var.subnet_ids}"
    variables = {
        k: v for entry in parsed(MODULE / "variables.tf")["variable"] for k, v in entry.items()
    }
    assert variables["timeout"]["default"] == 900


def test_every_variable_and_output_is_described_and_in_the_module_readme():
    readme = (MODULE / "README.md").read_text()
    for kind, path in (("variable", "variables.tf"), ("output", "outputs.tf")):
        for entry in parsed(MODULE / path)[kind]:
            for name, body in entry.items():
                assert body.get("description"), f"{kind} {name} has no description"
                assert f"`{name}`" in readme, f"{kind} {name} is not in the module README"


def test_checkov_reports_no_failure_and_every_skip_has_a_reason():
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `bash dev/setup.sh`"
    done = subprocess.run(
        [str(CHECKOV), "-d", str(MODULE), "--framework", "terraform", "--skip-download"]
        + ["-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    assert summary["failed"] == 0 and done.returncode == 0, [
        (c["check_id"], c["resource"]) for c in failed
    ]
    assert summary["parsing_errors"] == 0 and summary["passed"] >= 30
    skipped = report["results"].get("skipped_checks", [])
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} is skipped without a reason"
    # The example renders the module with values, so the IAM checks see real statements.
    rendered = {c["resource"] for c in report["results"].get("passed_checks", [])}
    assert "module.rds_initializer.aws_iam_policy_document.execution" in rendered
