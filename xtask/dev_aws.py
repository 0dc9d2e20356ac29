"""Provision the dev stack's AWS resources in moto, and manage dev Cognito users.

Run by `cargo xtask dev` / `cargo xtask token` with the tools venv's Python
(boto3 comes with moto). Every operation is idempotent: existing resources are
found and reused. Results are printed as one JSON object on stdout; progress
and errors go to stderr.

Environment: AWS_ENDPOINT_URL (moto), AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY; `provision` also reads TREVEN_MESH_SIGNING_KEYS and `user`
reads TREVEN_DEV_PASSWORD (optional: generated when empty).
"""

import argparse
import json
import os
import secrets
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROLE_GROUPS = ("admin", "analyst", "viewer")


def client(service):
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ["AWS_REGION"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def error_code(err):
    return err.response.get("Error", {}).get("Code", "")


def log(message):
    print(f"    aws: {message}", file=sys.stderr, flush=True)


# --- S3 ---------------------------------------------------------------------


def ensure_bucket(name):
    s3 = client("s3")
    region = os.environ["AWS_REGION"]
    try:
        s3.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
        )
        log(f"created bucket {name}")
    except ClientError as err:
        if error_code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_bucket_versioning(
        Bucket=name, VersioningConfiguration={"Status": "Enabled"}
    )
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


# --- DynamoDB ---------------------------------------------------------------


def ensure_tables(spec_path, env):
    with open(spec_path, encoding="utf-8") as spec_file:
        spec = json.load(spec_file)
    dynamodb = client("dynamodb")
    names = {}
    for table in spec["tables"]:
        name = table["tableName"].replace("{env}", env)
        names[table["id"]] = name
        try:
            dynamodb.describe_table(TableName=name)
            continue
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":
                raise
        keys = [table["partitionKey"], table.get("sortKey")]
        gsis = []
        for index in table.get("globalSecondaryIndexes", []):
            keys += [index["partitionKey"], index.get("sortKey")]
            schema = [{"AttributeName": index["partitionKey"], "KeyType": "HASH"}]
            if index.get("sortKey"):
                schema.append({"AttributeName": index["sortKey"], "KeyType": "RANGE"})
            gsis.append(
                {
                    "IndexName": index["indexName"],
                    "KeySchema": schema,
                    "Projection": {"ProjectionType": "ALL"},
                }
            )
        attributes = []
        for key in keys:
            if key and key not in [a["AttributeName"] for a in attributes]:
                attributes.append({"AttributeName": key, "AttributeType": "S"})
        schema = [{"AttributeName": table["partitionKey"], "KeyType": "HASH"}]
        if table.get("sortKey"):
            schema.append({"AttributeName": table["sortKey"], "KeyType": "RANGE"})
        request = {
            "TableName": name,
            "AttributeDefinitions": attributes,
            "KeySchema": schema,
            "BillingMode": "PAY_PER_REQUEST",
        }
        if gsis:
            request["GlobalSecondaryIndexes"] = gsis
        dynamodb.create_table(**request)
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        if table.get("timeToLiveAttribute"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": table["timeToLiveAttribute"],
                },
            )
        log(f"created table {name}")
    return names


# --- Cognito ----------------------------------------------------------------


def find_user_pool(cognito, name):
    paginator = cognito.get_paginator("list_user_pools")
    for page in paginator.paginate(PaginationConfig={"PageSize": 60}):
        for pool in page["UserPools"]:
            if pool["Name"] == name:
                return pool["Id"]
    return None


def ensure_user_pool(name):
    cognito = client("cognito-idp")
    pool_id = find_user_pool(cognito, name)
    if pool_id is None:
        pool_id = cognito.create_user_pool(
            PoolName=name,
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
            Schema=[
                {
                    "Name": "orgId",
                    "AttributeDataType": "String",
                    "Mutable": False,
                    "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "64"},
                }
            ],
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        )["UserPool"]["Id"]
        log(f"created user pool {name} ({pool_id})")
    for group in ROLE_GROUPS:
        try:
            cognito.create_group(UserPoolId=pool_id, GroupName=group)
        except ClientError as err:
            if error_code(err) != "GroupExistsException":
                raise
    client_name = f"{name}-web"
    client_id = None
    paginator = cognito.get_paginator("list_user_pool_clients")
    for page in paginator.paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60}):
        for app in page["UserPoolClients"]:
            if app["ClientName"] == client_name:
                client_id = app["ClientId"]
    if client_id is None:
        client_id = cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=client_name,
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            # ID tokens carry what the gateway reads (as in AWS, where a
            # client reads every attribute unless restricted).
            ReadAttributes=["email", "email_verified", "custom:orgId"],
        )["UserPoolClient"]["ClientId"]
        log(f"created app client {client_name} ({client_id})")
    return pool_id, client_id


# --- Secrets Manager ----------------------------------------------------------


def ensure_secret(name, value):
    sm = client("secretsmanager")
    try:
        current = sm.get_secret_value(SecretId=name)["SecretString"]
        if current != value:
            sm.put_secret_value(SecretId=name, SecretString=value)
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        sm.create_secret(Name=name, SecretString=value)
        log(f"created secret {name}")


# --- commands -----------------------------------------------------------------


def provision(args):
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    region = os.environ["AWS_REGION"]
    mesh_key = os.environ.get("TREVEN_MESH_SIGNING_KEYS", "")
    if not mesh_key:
        sys.exit("TREVEN_MESH_SIGNING_KEYS is empty")
    ensure_bucket(args.bucket)
    tables = ensure_tables(args.tables, args.env)
    pool_id, client_id = ensure_user_pool(args.pool_name)
    ensure_secret(args.secret_name, mesh_key)
    return {
        "bucket": args.bucket,
        "tables": tables,
        "user_pool_id": pool_id,
        "client_id": client_id,
        "issuer": f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        "jwks_url": f"{endpoint}/{pool_id}/.well-known/jwks.json",
        "secret_name": args.secret_name,
    }


def attributes_of(user):
    return {a["Name"]: a["Value"] for a in user.get("UserAttributes", user.get("Attributes", []))}


def user(args):
    cognito = client("cognito-idp")
    try:
        cognito.describe_user_pool(UserPoolId=args.pool_id)
    except ClientError as err:
        if error_code(err) == "ResourceNotFoundException":
            sys.exit(
                f"user pool {args.pool_id} does not exist in moto: moto was restarted "
                "outside `cargo xtask dev`; restart `cargo xtask dev`"
            )
        raise
    password = os.environ.get("TREVEN_DEV_PASSWORD") or (
        "Tv1!" + secrets.token_urlsafe(18)
    )
    existing = None
    try:
        existing = cognito.admin_get_user(UserPoolId=args.pool_id, Username=args.email)
    except ClientError as err:
        if error_code(err) != "UserNotFoundException":
            raise
    if existing is not None and attributes_of(existing).get("custom:orgId") != args.org_id:
        # custom:orgId is immutable: a user of another organisation is recreated.
        log(f"recreating {args.email}: it belonged to another organisation")
        cognito.admin_delete_user(UserPoolId=args.pool_id, Username=args.email)
        existing = None
    if existing is None:
        cognito.admin_create_user(
            UserPoolId=args.pool_id,
            Username=args.email,
            UserAttributes=[
                {"Name": "email", "Value": args.email},
                {"Name": "email_verified", "Value": "true"},
                {"Name": "name", "Value": args.name},
                {"Name": "custom:orgId", "Value": args.org_id},
            ],
            MessageAction="SUPPRESS",
        )
        log(f"created Cognito user {args.email}")
    cognito.admin_set_user_password(
        UserPoolId=args.pool_id, Username=args.email, Password=password, Permanent=True
    )
    groups = cognito.admin_list_groups_for_user(UserPoolId=args.pool_id, Username=args.email)
    for group in groups["Groups"]:
        if group["GroupName"] in ROLE_GROUPS and group["GroupName"] != args.role:
            cognito.admin_remove_user_from_group(
                UserPoolId=args.pool_id, Username=args.email, GroupName=group["GroupName"]
            )
    cognito.admin_add_user_to_group(
        UserPoolId=args.pool_id, Username=args.email, GroupName=args.role
    )
    sub = attributes_of(
        cognito.admin_get_user(UserPoolId=args.pool_id, Username=args.email)
    )["sub"]
    auth = cognito.admin_initiate_auth(
        UserPoolId=args.pool_id,
        ClientId=args.client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": args.email, "PASSWORD": password},
    )["AuthenticationResult"]
    return {
        "sub": sub,
        "password": password,
        "id_token": auth["IdToken"],
        "access_token": auth["AccessToken"],
        "refresh_token": auth.get("RefreshToken", ""),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("provision", help="create the bucket, tables, user pool and secret")
    p.add_argument("--tables", required=True, help="deploy/resources/dynamodb-tables.json")
    p.add_argument("--env", default="local")
    p.add_argument("--bucket", default="treven-data-local")
    p.add_argument("--pool-name", default="treven-local")
    p.add_argument("--secret-name", default="treven/local/mesh-signing-keys")

    u = commands.add_parser("user", help="ensure a Cognito user and sign it in")
    u.add_argument("--pool-id", required=True)
    u.add_argument("--client-id", required=True)
    u.add_argument("--email", required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--org-id", required=True)
    u.add_argument("--role", required=True, choices=ROLE_GROUPS)

    args = parser.parse_args()
    try:
        result = provision(args) if args.command == "provision" else user(args)
    except ClientError as err:
        sys.exit(f"AWS call failed: {err}")
    except Exception as err:  # connection refused and the like, one line
        sys.exit(f"{type(err).__name__}: {err}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
