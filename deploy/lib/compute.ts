/**
 * The ECS Fargate cluster and its six services, their environment and task
 * roles, the Cloud Map namespace `treven.internal`, and the two load
 * balancers in front of the gateway:
 * - an internal ALB (HTTP 80 → gateway-api :8080) reached only by the
 *   API Gateway VPC link;
 * - an internet-facing ALB for WebSockets (→ gateway-ws :8081, idle timeout
 *   one hour) that admits only CloudFront's origin-facing addresses and
 *   forwards only requests carrying CloudFront's secret origin header.
 *
 * Least privilege: each task role gets exactly the statements listed in
 * {@link Compute.grant} and README "Least-privilege matrix".
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct } from 'constructs';
import {
  BEDROCK_FOUNDATION_MODEL_ID,
  BEDROCK_INFERENCE_PROFILE_ID,
  CALLS,
  GATEWAY_API_PORT,
  GATEWAY_HEALTH_PATH,
  GATEWAY_WS_PORT,
  GRPC_PORTS,
  GRPC_SERVICES,
  GrpcServiceName,
  NAMESPACE,
  POSTGRES_USERS,
  REDIS_USERS,
  REGION,
  SERVICE_SPECS,
  ServiceName,
  Settings,
} from './config';
import { Data } from './data';
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

export const BEDROCK_INVOKE_ACTIONS = ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'];

export interface ComputeProps {
  readonly settings: Settings;
  readonly network: Network;
  readonly data: Data;
  readonly identity: Identity;
  readonly repository: ecr.IRepository;
}

/** `http://tenants.treven.internal:50051`. */
export function serviceUrl(name: GrpcServiceName): string {
  return `http://${name}.${NAMESPACE}:${GRPC_PORTS[name]}`;
}

/** `TREVEN_TENANTS_URL` and so on. */
export function urlVar(name: GrpcServiceName): string {
  return `TREVEN_${name.toUpperCase()}_URL`;
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
  /** Secret value CloudFront sends in {@link ORIGIN_VERIFY_HEADER}. */
  readonly originVerify: secretsmanager.Secret;

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
        secrets: this.secretsFor(name, data),
        namespace: isGrpc ? this.namespace : undefined,
        grpcHealthCheck: isGrpc,
        behindLoadBalancer: !isGrpc,
      });
      this.grant(name, this.services[name].taskRole, props);
    }

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
    const wsListener = settings.wsCertificateArn
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
        });
    wsListener.addTargets('GatewayWs', {
      priority: 10,
      conditions: [
        elbv2.ListenerCondition.httpHeader(ORIGIN_VERIFY_HEADER, [this.originVerify.secretValue.unsafeUnwrap()]),
      ],
      port: GATEWAY_WS_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.services['gateway-ws'].service.loadBalancerTarget({ containerName: 'treven', containerPort: GATEWAY_WS_PORT })],
      healthCheck: { path: GATEWAY_HEALTH_PATH, healthyHttpCodes: '200', interval: Duration.seconds(15) },
      // Let open sockets finish or reconnect elsewhere during deploys.
      deregistrationDelay: Duration.seconds(120),
    });
  }

  /** The environment of one service: only what that service reads. */
  private environmentFor(name: ServiceName, props: ComputeProps): Record<string, string> {
    const { settings, data, identity } = props;
    const spec = SERVICE_SPECS[name];
    const vars: Record<string, string> = {
      TREVEN_ENV: settings.env.envName,
      TREVEN_LOG_FORMAT: 'json',
      AWS_REGION: REGION,
      TREVEN_MESH_KEY_SECRET_ID: data.meshKey.secretArn,
    };
    if (settings.otlpEndpoint) vars.OTEL_EXPORTER_OTLP_ENDPOINT = settings.otlpEndpoint;
    if (spec.target === 'gateway') {
      // Both gateway services run the whole gateway role; each exposes one port.
      vars.TREVEN_GATEWAY_ADDR = `0.0.0.0:${GATEWAY_API_PORT}`;
      vars.TREVEN_GATEWAY_WS_ADDR = `0.0.0.0:${GATEWAY_WS_PORT}`;
      vars.TREVEN_COGNITO_ISSUER = identity.issuer;
      vars.TREVEN_COGNITO_CLIENT_ID = identity.webClient.userPoolClientId;
    } else {
      vars[`TREVEN_${spec.target.toUpperCase()}_ADDR`] = `0.0.0.0:${spec.port}`;
    }
    for (const callee of CALLS[name]) vars[urlVar(callee)] = serviceUrl(callee);
    if (POSTGRES_USERS.includes(name)) vars[`TREVEN_${name.toUpperCase()}_DATABASE_URL`] = data.databaseUrl;
    if (name === 'documents') {
      vars.TREVEN_DATA_BUCKET = data.dataBucket.bucketName;
      vars.TREVEN_DOCUMENTS_TABLE = data.tables.documents.tableName;
    }
    if (name === 'agents') {
      vars.TREVEN_AGENTS_TABLE = data.tables.agents.tableName;
      vars.TREVEN_BEDROCK_MODEL_ID = BEDROCK_INFERENCE_PROFILE_ID;
    }
    return vars;
  }

  /** Secrets injected by ECS (read by the execution role, never in the task definition). */
  private secretsFor(name: ServiceName, data: Data): Record<string, ecs.Secret> | undefined {
    const secrets: Record<string, ecs.Secret> = {};
    if (POSTGRES_USERS.includes(name)) {
      secrets.TREVEN_DATABASE_PASSWORD = ecs.Secret.fromSecretsManager(data.dbSecret, 'password');
    }
    if (REDIS_USERS.includes(name)) secrets.TREVEN_REDIS_URL = ecs.Secret.fromSecretsManager(data.redisUrl);
    return Object.keys(secrets).length > 0 ? secrets : undefined;
  }

  /** The task role of one service: only its actions on only its resources. */
  private grant(name: ServiceName, role: iam.IRole, props: ComputeProps): void {
    const { data, settings } = props;
    // Every service verifies (and the gateway mints) mesh context tokens.
    data.meshKey.grantRead(role);
    if (POSTGRES_USERS.includes(name)) data.dbSecret.grantRead(role);
    const tableStatements = (table: { tableArn: string }) => [
      new iam.PolicyStatement({
        actions: DYNAMODB_ITEM_ACTIONS,
        resources: [table.tableArn, `${table.tableArn}/index/*`],
      }),
    ];
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
    }
  }
}
