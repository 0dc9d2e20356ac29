/**
 * The ECS Fargate cluster and its six services, their environment and task
 * roles, the Cloud Map namespace `treven.internal`, and the two load
 * balancers in front of the gateway:
 * - an internal ALB (HTTP 80 → gateway-api :8080) reached only by the
 *   API Gateway VPC link;
 * - an internet-facing ALB for WebSockets (→ gateway-ws :8081, idle timeout
 *   one hour) and streamed chat (`/api/conversations/*\/messages` →
 *   gateway-api :8080, which API Gateway would buffer) that admits only
 *   CloudFront's origin-facing addresses and forwards only requests carrying
 *   CloudFront's secret origin header.
 *
 * Every task gets exactly the variables its role of the binary reads, with
 * TLS on every hop: https Cloud Map URLs and the mesh CA seed (ECS secret),
 * its own principal's mesh signing key (by secret ARN) and every principal's
 * public key (TREVEN_MESH_PUBLIC_KEYS),
 * Postgres URLs with `sslmode=verify-full` and the RDS CA bundle, Redis as
 * a `rediss://` secret (README "TLS and secrets per task").
 *
 * Least privilege: each task role gets exactly the statements listed in
 * {@link Compute.grant} and README "Least-privilege matrix". Each Postgres
 * service logs in as its own database user (its own secret); only the
 * one-off migrate task ({@link Compute.migrateTask}) holds the master
 * credentials.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct } from 'constructs';
import {
  ADMIN_PORT,
  BEDROCK_FOUNDATION_MODEL_ID,
  BEDROCK_INFERENCE_PROFILE_ID,
  CALLS,
  GATEWAY_API_PORT,
  GATEWAY_HEALTH_PATH,
  GATEWAY_WS_PORT,
  GRPC_PORTS,
  GRPC_SERVICES,
  GrpcServiceName,
  GEMINI_LOCATION,
  meshTlsNames,
  NAMESPACE,
  POSTGRES_USERS,
  principalOf,
  RDS_CA_BUNDLE_PATH,
  REDIS_USERS,
  REGION,
  SERVICE_SPECS,
  ServiceName,
  Settings,
} from './config';
import { Data, PostgresUser } from './data';
import { PiiGuardrail } from './guardrail';
import { Identity } from './identity';
import { Network, pascal, SUBNET_APP, SUBNET_PUBLIC } from './network';
import { TrevenService } from './service';

/** Header CloudFront adds to WebSocket requests; the ALB forwards nothing without it. */
export const ORIGIN_VERIFY_HEADER = 'X-Origin-Verify';

/** DynamoDB item actions the documents and agents services use (no scans, no table admin). */
export const DYNAMODB_ITEM_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
];

/** Object actions of the documents service (presigned PUT/GET are signed with its role). */
export const S3_OBJECT_ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'];
/**
 * What tenants does to the user pool (invitations, role groups, removal),
 * on that pool only: tenants is the source of truth, Cognito follows it.
 */
export const COGNITO_INVITE_ACTIONS = [
  'cognito-idp:AdminCreateUser',
  'cognito-idp:AdminAddUserToGroup',
  'cognito-idp:AdminRemoveUserFromGroup',
  'cognito-idp:AdminDisableUser',
  'cognito-idp:AdminEnableUser',
  'cognito-idp:AdminUserGlobalSignOut',
  'cognito-idp:AdminUpdateUserAttributes',
  'cognito-idp:AdminGetUser',
];

export const BEDROCK_INVOKE_ACTIONS = ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'];

export interface ComputeProps {
  readonly settings: Settings;
  readonly network: Network;
  readonly data: Data;
  readonly identity: Identity;
  readonly repository: ecr.IRepository;
  /** The Bedrock guardrail of the agents service. */
  readonly guardrail: PiiGuardrail;
}

/** `https://tenants.treven.internal:50051` (mesh TLS; the name is the server certificate's). */
export function serviceUrl(name: GrpcServiceName): string {
  return `https://${name}.${NAMESPACE}:${GRPC_PORTS[name]}`;
}

/**
 * The streamed chat routes (`GET` history / `POST` send with SSE or NDJSON):
 * API Gateway HTTP APIs buffer responses, so CloudFront sends this path to
 * the public ALB, which forwards it to gateway-api :8080.
 */
export const STREAMING_PATH = '/api/conversations/*/messages';

/** `TREVEN_TENANTS_URL` and so on. */
export function urlVar(name: GrpcServiceName): string {
  return `TREVEN_${name.toUpperCase()}_URL`;
}

/**
 * The model choice of the agents role (ECS service and AgentCore runtime):
 * Bedrock first, always named; the Gemini secondary only with
 * `-c geminiProject` and where its API key can be injected as a secret
 * (`gemini: false` for AgentCore, whose variables are plain text).
 */
export function modelEnvironment(settings: Settings, where: { gemini: boolean }): Record<string, string> {
  const vars: Record<string, string> = {
    TREVEN_MODEL_PRIMARY: 'bedrock',
    TREVEN_BEDROCK_MODEL_ID: BEDROCK_INFERENCE_PROFILE_ID,
  };
  if (settings.geminiProject && where.gemini) {
    vars.TREVEN_MODEL_SECONDARY = 'gemini';
    vars.TREVEN_GEMINI_PROJECT = settings.geminiProject;
    vars.TREVEN_GEMINI_LOCATION = GEMINI_LOCATION;
  } else {
    vars.TREVEN_MODEL_SECONDARY = 'none';
  }
  return vars;
}

/** The Bedrock resources the agents role may invoke (the EU profile and the models it routes to). */
export function bedrockArns(stack: Stack, regions: readonly string[]): { profile: string; models: string[] } {
  return {
    profile: `arn:${stack.partition}:bedrock:${REGION}:${stack.account}:inference-profile/${BEDROCK_INFERENCE_PROFILE_ID}`,
    models: regions.map((r) => `arn:${stack.partition}:bedrock:${r}::foundation-model/${BEDROCK_FOUNDATION_MODEL_ID}`),
  };
}

/** Bedrock invoke statements: the profile, and its models only when called through the profile. */
export function bedrockStatements(stack: Stack, regions: readonly string[]): iam.PolicyStatement[] {
  const arns = bedrockArns(stack, regions);
  return [
    new iam.PolicyStatement({ sid: 'InvokeEuInferenceProfile', actions: BEDROCK_INVOKE_ACTIONS, resources: [arns.profile] }),
    new iam.PolicyStatement({
      sid: 'InvokeModelsThroughProfile',
      actions: BEDROCK_INVOKE_ACTIONS,
      resources: arns.models,
      conditions: { StringEquals: { 'bedrock:InferenceProfileArn': arns.profile } },
    }),
  ];
}

/** Cluster, services, load balancers. */
export class Compute extends Construct {
  readonly cluster: ecs.Cluster;
  readonly namespace: servicediscovery.PrivateDnsNamespace;
  readonly services: Record<ServiceName, TrevenService>;
  readonly apiAlb: elbv2.ApplicationLoadBalancer;
  readonly apiListener: elbv2.ApplicationListener;
  readonly wsAlb: elbv2.ApplicationLoadBalancer;
  /** The public ALB's listener (CloudFront's WebSocket and streaming origin). */
  readonly wsListener: elbv2.ApplicationListener;
  /** Secret value CloudFront sends in {@link ORIGIN_VERIFY_HEADER}. */
  readonly originVerify: secretsmanager.Secret;
  /**
   * `treven migrate --target tenants,reports`, run as a one-off task before
   * the services roll (deploy/README.md "Database migrations in AWS"): as
   * the RDS master user (the owner) it applies the migrations and creates
   * or updates each service's login role with the password from that
   * service's secret. The only task given the master credentials.
   */
  readonly migrateTask: ecs.FargateTaskDefinition;

  constructor(scope: Construct, id: string, props: ComputeProps) {
    super(scope, id);
    const { settings, network, data } = props;
    const { env } = settings;
    const { vpc } = network;

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      clusterName: `treven-${env.envName}`,
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.namespace = new servicediscovery.PrivateDnsNamespace(this, 'Namespace', {
      name: NAMESPACE,
      vpc,
      description: 'Treven mesh: <service>.treven.internal A records, re-resolved by the callers',
    });

    const names = Object.keys(SERVICE_SPECS) as ServiceName[];
    this.services = {} as Record<ServiceName, TrevenService>;
    for (const name of names) {
      const spec = SERVICE_SPECS[name];
      const isGrpc = (GRPC_SERVICES as readonly string[]).includes(name);
      this.services[name] = new TrevenService(this, pascal(name), {
        spec,
        env,
        cluster: this.cluster,
        repository: props.repository,
        imageTag: settings.imageTag,
        securityGroup: network.serviceSg[name],
        environment: this.environmentFor(name, props),
        secrets: this.secretsFor(name, settings, data),
        namespace: isGrpc ? this.namespace : undefined,
        grpcHealthCheck: isGrpc,
        behindLoadBalancer: !isGrpc,
      });
      this.grant(name, this.services[name].taskRole, props);
    }

    this.migrateTask = this.migrateTaskDefinition(props);

    // --- Internal ALB: API Gateway VPC link → gateway-api ----------------------
    this.apiAlb = new elbv2.ApplicationLoadBalancer(this, 'ApiAlb', {
      vpc,
      internetFacing: false,
      vpcSubnets: { subnetGroupName: SUBNET_APP },
      securityGroup: network.apiAlbSg,
      dropInvalidHeaderFields: true,
      idleTimeout: Duration.seconds(60),
      deletionProtection: env.deletionProtection,
    });
    this.apiAlb.logAccessLogs(data.edgeLogsBucket, 'alb/api');
    this.apiListener = this.apiAlb.addListener('Http', { port: 80, protocol: elbv2.ApplicationProtocol.HTTP, open: false });
    this.apiListener.addTargets('GatewayApi', {
      port: GATEWAY_API_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.services['gateway-api'].service.loadBalancerTarget({ containerName: 'treven', containerPort: GATEWAY_API_PORT })],
      healthCheck: { path: GATEWAY_HEALTH_PATH, healthyHttpCodes: '200', interval: Duration.seconds(15) },
      deregistrationDelay: Duration.seconds(30),
    });

    // --- Public ALB: CloudFront → gateway-ws (WebSocket) -------------------------
    this.originVerify = new secretsmanager.Secret(this, 'OriginVerify', {
      secretName: `treven/${env.envName}/cloudfront-origin-verify`,
      description: 'Shared secret header CloudFront sends to the WebSocket ALB',
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.wsAlb = new elbv2.ApplicationLoadBalancer(this, 'WsAlb', {
      vpc,
      internetFacing: true,
      vpcSubnets: { subnetGroupName: SUBNET_PUBLIC },
      securityGroup: network.wsAlbSg,
      dropInvalidHeaderFields: true,
      // WebSockets stay open between messages; the gateway pings well inside this.
      idleTimeout: Duration.seconds(3600),
      deletionProtection: env.deletionProtection,
    });
    this.wsAlb.logAccessLogs(data.edgeLogsBucket, 'alb/ws');
    const wsListener = (this.wsListener = settings.wsCertificateArn
      ? this.wsAlb.addListener('Https', {
          port: 443,
          protocol: elbv2.ApplicationProtocol.HTTPS,
          certificates: [elbv2.ListenerCertificate.fromArn(settings.wsCertificateArn)],
          sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
          open: false,
          defaultAction: elbv2.ListenerAction.fixedResponse(403, { contentType: 'text/plain', messageBody: 'forbidden' }),
        })
      : this.wsAlb.addListener('Http', {
          port: 80,
          protocol: elbv2.ApplicationProtocol.HTTP,
          open: false,
          defaultAction: elbv2.ListenerAction.fixedResponse(403, { contentType: 'text/plain', messageBody: 'forbidden' }),
        }));
    const fromCloudFront = elbv2.ListenerCondition.httpHeader(ORIGIN_VERIFY_HEADER, [
      this.originVerify.secretValue.unsafeUnwrap(),
    ]);
    // Streamed chat (SSE / NDJSON): CloudFront → this ALB → gateway-api :8080,
    // because API Gateway would buffer the whole response. Same admission as
    // the WebSocket: CloudFront's prefix list and the secret origin header.
    // The gateway itself verifies the Cognito JWT and rate-limits, as on every
    // route. The idle timeout (3600 s) lets long streams run.
    wsListener.addTargets('GatewayApiStream', {
      priority: 5,
      conditions: [elbv2.ListenerCondition.pathPatterns([STREAMING_PATH]), fromCloudFront],
      port: GATEWAY_API_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.services['gateway-api'].service.loadBalancerTarget({ containerName: 'treven', containerPort: GATEWAY_API_PORT })],
      healthCheck: { path: GATEWAY_HEALTH_PATH, healthyHttpCodes: '200', interval: Duration.seconds(15) },
      // Let running streams finish during deploys.
      deregistrationDelay: Duration.seconds(120),
    });
    wsListener.addTargets('GatewayWs', {
      priority: 10,
      conditions: [fromCloudFront],
      port: GATEWAY_WS_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.services['gateway-ws'].service.loadBalancerTarget({ containerName: 'treven', containerPort: GATEWAY_WS_PORT })],
      healthCheck: { path: GATEWAY_HEALTH_PATH, healthyHttpCodes: '200', interval: Duration.seconds(15) },
      // Let open sockets finish or reconnect elsewhere during deploys.
      deregistrationDelay: Duration.seconds(120),
    });
  }

  /**
   * The environment of one service: exactly what that role of the binary
   * reads (`treven serve --target <role> --check-config` refuses a missing
   * required variable and any TREVEN_* variable the role does not read).
   */
  private environmentFor(name: ServiceName, props: ComputeProps): Record<string, string> {
    const { settings, data, identity } = props;
    const spec = SERVICE_SPECS[name];
    const vars: Record<string, string> = {
      TREVEN_ENV: settings.env.envName,
      TREVEN_LOG_FORMAT: 'json',
      AWS_REGION: REGION,
      // Its own principal's seed (read with the task role), everyone's public keys.
      TREVEN_MESH_SIGNING_KEY_SECRET_ID: data.meshKeys.secrets[principalOf(name)].secretArn,
      TREVEN_MESH_PUBLIC_KEYS: data.meshKeys.publicKeys,
    };
    if (settings.otlpEndpoint) vars.OTEL_EXPORTER_OTLP_ENDPOINT = settings.otlpEndpoint;
    if (spec.target === 'gateway') {
      // Both gateway services run the whole gateway role; each exposes one port.
      vars.TREVEN_GATEWAY_ADDR = `0.0.0.0:${GATEWAY_API_PORT}`;
      vars.TREVEN_GATEWAY_WS_ADDR = `0.0.0.0:${GATEWAY_WS_PORT}`;
      vars.TREVEN_COGNITO_ISSUER = identity.issuer;
      vars.TREVEN_COGNITO_CLIENT_ID = identity.webClient.userPoolClientId;
      // Routes also come from the services' reflection, refreshed every 30 s
      // (the default), so a service deployed with a new public RPC (one with
      // a google.api.http rule) is served without a gateway deploy.
      vars.TREVEN_GATEWAY_REFLECTION = 'true';
    } else {
      vars[`TREVEN_${spec.target.toUpperCase()}_ADDR`] = `0.0.0.0:${spec.port}`;
      // `/metrics` and `/healthz` for the task's metrics sidecar (lib/observability.ts).
      vars.TREVEN_ADMIN_ADDR = `0.0.0.0:${ADMIN_PORT}`;
      // The DNS names this server's mesh leaf certificate is issued for.
      vars.TREVEN_MESH_TLS_NAMES = meshTlsNames(name as GrpcServiceName).join(',');
    }
    for (const callee of CALLS[name]) vars[urlVar(callee)] = serviceUrl(callee);
    if (POSTGRES_USERS.includes(name)) {
      vars[`TREVEN_${name.toUpperCase()}_DATABASE_URL`] = data.databaseUrlFor(name as PostgresUser);
      vars.TREVEN_TLS_CA_FILE = RDS_CA_BUNDLE_PATH;
    }
    if (name === 'tenants') {
      // Invitations: tenants creates, moves, disables and signs out users of this pool.
      vars.TREVEN_COGNITO_USER_POOL_ID = identity.userPool.userPoolId;
    }
    if (name === 'documents') {
      vars.TREVEN_DATA_BUCKET = data.dataBucket.bucketName;
      vars.TREVEN_DOCUMENTS_TABLE = data.tables.documents.tableName;
    }
    if (name === 'agents') {
      vars.TREVEN_AGENTS_TABLE = data.tables.agents.tableName;
      Object.assign(vars, modelEnvironment(settings, { gemini: true }), props.guardrail.environment());
    }
    return vars;
  }

  /** Secrets injected by ECS (read by the execution role, never in the task definition). */
  private secretsFor(name: ServiceName, settings: Settings, data: Data): Record<string, ecs.Secret> {
    const secrets: Record<string, ecs.Secret> = {
      // Every task: servers derive the CA that issues their leaf certificate,
      // clients the only CA they trust.
      TREVEN_MESH_CA_SEED: ecs.Secret.fromSecretsManager(data.meshCaSeed),
    };
    if (settings.meshCaAlsoTrust) {
      secrets.TREVEN_MESH_CA_SEED_PREVIOUS = ecs.Secret.fromSecretsManagerVersion(data.meshCaSeed, {
        versionStage: settings.meshCaAlsoTrust,
      });
    }
    if (POSTGRES_USERS.includes(name)) {
      // Its own database user's password, never the master's.
      secrets.TREVEN_DATABASE_PASSWORD = ecs.Secret.fromSecretsManager(data.dbUsers[name as PostgresUser], 'password');
    }
    if (REDIS_USERS.includes(name)) secrets.TREVEN_REDIS_URL = ecs.Secret.fromSecretsManager(data.redisUrl);
    if (name === 'agents' && data.geminiApiKey) {
      secrets.TREVEN_GEMINI_API_KEY = ecs.Secret.fromSecretsManager(data.geminiApiKey);
    }
    return secrets;
  }

  /**
   * The migrate task: the owner's user (plain) and password (ECS secret from
   * the master secret), each service's URL with its login role and that
   * role's password (ECS secrets from the services' own secrets), the RDS
   * CA bundle. Nothing else: `treven migrate --check-config` refuses any
   * other TREVEN_* variable.
   */
  private migrateTaskDefinition(props: ComputeProps): ecs.FargateTaskDefinition {
    const { settings, data } = props;
    const { env } = settings;
    const logGroup = new logs.LogGroup(this, 'MigrateLogs', {
      logGroupName: `/treven/${env.envName}/migrate`,
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const task = new ecs.FargateTaskDefinition(this, 'MigrateTask', {
      family: `treven-${env.envName}-migrate`,
      cpu: 256,
      memoryLimitMiB: 512,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const users = POSTGRES_USERS as readonly PostgresUser[];
    const environment: Record<string, string> = {
      TREVEN_MIGRATE_DATABASE_USER: data.databaseOwner,
      TREVEN_TLS_CA_FILE: RDS_CA_BUNDLE_PATH,
    };
    const secrets: Record<string, ecs.Secret> = {
      TREVEN_MIGRATE_DATABASE_PASSWORD: ecs.Secret.fromSecretsManager(data.dbSecret, 'password'),
    };
    for (const user of users) {
      environment[`TREVEN_${user.toUpperCase()}_DATABASE_URL`] = data.databaseUrlFor(user);
      secrets[`TREVEN_${user.toUpperCase()}_DATABASE_PASSWORD`] = ecs.Secret.fromSecretsManager(data.dbUsers[user], 'password');
    }
    task.addContainer('treven', {
      containerName: 'treven',
      image: ecs.ContainerImage.fromEcrRepository(props.repository, settings.imageTag),
      command: ['migrate', '--target', users.join(',')],
      environment,
      secrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'migrate' }),
      readonlyRootFilesystem: true,
      essential: true,
    });
    return task;
  }

  /** The task role of one service: only its actions on only its resources. */
  private grant(name: ServiceName, role: iam.IRole, props: ComputeProps): void {
    const { data, settings } = props;
    // Each service signs mesh context tokens with its own principal's key
    // only (both gateway services are `gateway`); verifying needs no secret.
    data.meshKeys.secrets[principalOf(name)].grantRead(role);
    if (POSTGRES_USERS.includes(name)) data.dbUsers[name as PostgresUser].grantRead(role);
    const tableStatements = (table: { tableArn: string }) => [
      new iam.PolicyStatement({
        actions: DYNAMODB_ITEM_ACTIONS,
        resources: [table.tableArn, `${table.tableArn}/index/*`],
      }),
    ];
    if (name === 'tenants') {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: COGNITO_INVITE_ACTIONS, resources: [props.identity.userPool.userPoolArn] }),
      );
    }
    if (name === 'documents') {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: S3_OBJECT_ACTIONS, resources: [data.dataBucket.arnForObjects('*')] }),
      );
      role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [data.dataBucket.bucketArn] }));
      tableStatements(data.tables.documents).forEach((s) => role.addToPrincipalPolicy(s));
    }
    if (name === 'agents') {
      tableStatements(data.tables.agents).forEach((s) => role.addToPrincipalPolicy(s));
      bedrockStatements(Stack.of(this), settings.bedrockRegions).forEach((s) => role.addToPrincipalPolicy(s));
      role.addToPrincipalPolicy(props.guardrail.statement());
    }
  }
}
