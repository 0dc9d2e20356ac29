/**
 * Everything that differs between `dev` and `prod`, every fixed fact of the
 * architecture (region, ports, service names, who calls whom, model ids) and
 * the reading of CDK context. The constructs in this folder take their
 * numbers from here only, so a reviewer reads one file to know the shape.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Node } from 'constructs';

/** Data residency: the whole platform lives in London. Not configurable. */
export const REGION = 'eu-west-2';

/**
 * Used when no `-c account=...` is given (CI, tests, offline synth). A real
 * deploy passes the account; see README "Deploy".
 */
export const PLACEHOLDER_ACCOUNT = '123456789012';

/** The fallback AZs for eu-west-2: every account has a, b and c. */
export const DEFAULT_AVAILABILITY_ZONES = ['eu-west-2a', 'eu-west-2b', 'eu-west-2c'];

/** The two deployable environments. `local` exists only for `cargo xtask dev`. */
export type EnvName = 'dev' | 'prod';
export const ENV_NAMES: readonly EnvName[] = ['dev', 'prod'];

/** Sizing and safety settings that differ between environments. */
export interface EnvConfig {
  readonly envName: EnvName;
  /** RDS Multi-AZ and ElastiCache replica + automatic failover. */
  readonly multiAz: boolean;
  /** One NAT gateway in dev (cost); one per AZ in prod (no cross-AZ dependency). */
  readonly natGateways: number;
  /** Tasks per ECS service at deploy time and the autoscaling floor. */
  readonly minTasks: number;
  /** Autoscaling ceiling per ECS service. */
  readonly maxTasks: number;
  readonly logRetention: RetentionDays;
  readonly dbBackupRetention: Duration;
  /** RDS / DynamoDB deletion protection. */
  readonly deletionProtection: boolean;
  /** What happens to stateful resources when the stack is deleted. */
  readonly statefulRemovalPolicy: RemovalPolicy;
  /** HTTP API default-stage throttling (steady requests/s and burst). */
  readonly apiThrottle: { readonly rateLimit: number; readonly burstLimit: number };
  /** Keep this many tagged images in ECR. */
  readonly ecrKeepImages: number;
}

export const ENV_CONFIGS: Record<EnvName, EnvConfig> = {
  dev: {
    envName: 'dev',
    multiAz: false,
    natGateways: 1,
    minTasks: 1,
    maxTasks: 2,
    logRetention: RetentionDays.ONE_MONTH,
    dbBackupRetention: Duration.days(7),
    deletionProtection: false,
    statefulRemovalPolicy: RemovalPolicy.DESTROY,
    apiThrottle: { rateLimit: 50, burstLimit: 100 },
    ecrKeepImages: 20,
  },
  prod: {
    envName: 'prod',
    multiAz: true,
    natGateways: 3,
    minTasks: 2,
    maxTasks: 6,
    logRetention: RetentionDays.ONE_YEAR,
    dbBackupRetention: Duration.days(14),
    deletionProtection: true,
    statefulRemovalPolicy: RemovalPolicy.RETAIN,
    apiThrottle: { rateLimit: 500, burstLimit: 1000 },
    ecrKeepImages: 50,
  },
};

/** The six ECS services. `gateway-api` and `gateway-ws` run the same gateway role. */
export type ServiceName = 'gateway-api' | 'gateway-ws' | 'tenants' | 'documents' | 'reports' | 'agents';
/** The four gRPC services behind the gateway, each found through Cloud Map. */
export type GrpcServiceName = 'tenants' | 'documents' | 'reports' | 'agents';

export const GRPC_SERVICES: readonly GrpcServiceName[] = ['tenants', 'documents', 'reports', 'agents'];

/** gRPC ports (DESIGN.md "Shape"). */
export const GRPC_PORTS: Record<GrpcServiceName, number> = {
  tenants: 50051,
  documents: 50052,
  reports: 50053,
  agents: 50054,
};

/** Gateway ports: REST + gRPC-web, and WebSocket. */
export const GATEWAY_API_PORT = 8080;
export const GATEWAY_WS_PORT = 8081;
/** Health path the gateway serves on both of its ports (used by the ALB target groups). */
export const GATEWAY_HEALTH_PATH = '/healthz';
/**
 * The admin HTTP port of every gRPC service (`/metrics`, `/healthz`;
 * `TREVEN_ADMIN_ADDR`); the gateway serves both on its API port instead.
 * Reached only by the task's own metrics sidecar over loopback.
 */
export const ADMIN_PORT = 9464;

/** Cloud Map private DNS namespace: `tenants.treven.internal` and so on. */
export const NAMESPACE = 'treven.internal';

/** How one ECS service is run. */
export interface ServiceSpec {
  readonly name: ServiceName;
  /** `treven serve --target <target>`. */
  readonly target: string;
  /** The port its load balancer or its callers reach. */
  readonly port: number;
  readonly cpu: number;
  readonly memoryMiB: number;
}

export const SERVICE_SPECS: Record<ServiceName, ServiceSpec> = {
  'gateway-api': { name: 'gateway-api', target: 'gateway', port: GATEWAY_API_PORT, cpu: 512, memoryMiB: 1024 },
  'gateway-ws': { name: 'gateway-ws', target: 'gateway', port: GATEWAY_WS_PORT, cpu: 512, memoryMiB: 1024 },
  tenants: { name: 'tenants', target: 'tenants', port: GRPC_PORTS.tenants, cpu: 256, memoryMiB: 512 },
  documents: { name: 'documents', target: 'documents', port: GRPC_PORTS.documents, cpu: 256, memoryMiB: 512 },
  reports: { name: 'reports', target: 'reports', port: GRPC_PORTS.reports, cpu: 512, memoryMiB: 1024 },
  agents: { name: 'agents', target: 'agents', port: GRPC_PORTS.agents, cpu: 1024, memoryMiB: 2048 },
};

/**
 * Who may open a connection to whom (client → the gRPC services it calls).
 * Security groups and the TREVEN_<SERVICE>_URL variables are derived from
 * this one table, and it lists exactly the upstream URLs each role of the
 * binary reads (the config.rs of each service crate and of the gateway): the
 * gateway calls every service; reports calls tenants (access), documents
 * (evidence) and agents (generation); agents calls documents (sources) and
 * reports (its tools); documents calls tenants (the audit log of views,
 * downloads, deletes and retention erasures). tenants calls nobody. A URL variable the
 * role does not read would fail `treven serve --check-config`, so an edge
 * is added here only together with the Rust side reading it.
 */
export const CALLS: Record<ServiceName, readonly GrpcServiceName[]> = {
  'gateway-api': ['tenants', 'documents', 'reports', 'agents'],
  'gateway-ws': ['tenants', 'documents', 'reports', 'agents'],
  tenants: [],
  // tenants: the audit log of document views, downloads, deletes and erasures.
  documents: ['tenants'],
  reports: ['tenants', 'documents', 'agents'],
  // tenants: the audit log of admins' oversight reads of conversations.
  agents: ['tenants', 'documents', 'reports'],
};

/** Services that hold a Postgres connection (each owns its tables, RLS per org). */
export const POSTGRES_USERS: readonly ServiceName[] = ['tenants', 'reports'];
/**
 * Services that reach Redis: the gateway (rate limits, WebSocket fan-out),
 * reports (job progress events), agents (chat token events).
 */
export const REDIS_USERS: readonly ServiceName[] = ['gateway-api', 'gateway-ws', 'reports', 'agents'];

/**
 * Where the image keeps the RDS certificate bundle (deploy/Dockerfile stage
 * `rds-ca`, from https://truststore.pki.rds.amazonaws.com/eu-west-2/eu-west-2-bundle.pem).
 * The binary adds the PEM file named by TREVEN_TLS_CA_FILE to the system
 * roots; only the Postgres clients need it (ElastiCache presents a
 * certificate from Amazon's public CAs, which the system roots cover).
 */
export const RDS_CA_BUNDLE_PATH = '/etc/treven/rds-ca-bundle.pem';
/** libpq `sslmode` of every Postgres URL: TLS, the CA chain and the host name checked. */
export const DB_SSLMODE = 'verify-full';

/** The mesh TLS names of a gRPC service: its Cloud Map name (the leaf certificate's DNS SAN). */
export function meshTlsNames(name: GrpcServiceName): string[] {
  return [`${name}.${NAMESPACE}`];
}

/**
 * The optional secondary model (DESIGN.md "Models"): Gemini on Vertex AI in
 * London. Off unless `-c geminiProject=<gcp project>` is given.
 */
export const GEMINI_LOCATION = 'europe-west2';

/**
 * During a mesh CA rotation (README "TLS and secrets per task"), the
 * Secrets Manager version stage of the mesh CA seed that every task also
 * trusts, injected as TREVEN_MESH_CA_SEED_PREVIOUS.
 */
export type MeshCaAlsoTrust = 'AWSPENDING' | 'AWSPREVIOUS';
export const MESH_CA_ALSO_TRUST_STAGES: readonly MeshCaAlsoTrust[] = ['AWSPENDING', 'AWSPREVIOUS'];

/**
 * Principals of the mesh context token, each with its own Ed25519 signing
 * key (README "Mesh signing keys"): the two gateway services share
 * `gateway`, the AgentCore runtime is `agent-runtime`, and `operator` (for
 * `treven admin mint-context`) is held by no task.
 */
export type MeshPrincipal = 'gateway' | 'tenants' | 'documents' | 'reports' | 'agents' | 'agent-runtime' | 'operator';
export const MESH_PRINCIPALS: readonly MeshPrincipal[] = [
  'gateway',
  'tenants',
  'documents',
  'reports',
  'agents',
  'agent-runtime',
  'operator',
];

/** The principal whose key an ECS service signs with. */
export function principalOf(service: ServiceName): MeshPrincipal {
  return service === 'gateway-api' || service === 'gateway-ws' ? 'gateway' : service;
}

/** Postgres database and master user created by RDS. */
export const DB_NAME = 'treven';
export const DB_USER = 'treven';
export const DB_PORT = 5432;
export const REDIS_PORT = 6379;

/**
 * Bedrock: Claude Opus 4.5 through the EU cross-region inference profile
 * (the closest Bedrock geography to London). The profile routes each call to
 * one foundation model in an EU region; IAM must allow the profile and the
 * foundation model in every destination region, and the foundation-model
 * statement is pinned to "only through this profile" by a condition.
 * Check the live list with `aws bedrock get-inference-profile
 * --inference-profile-identifier eu.anthropic.claude-opus-4-5-20251101-v1:0
 * --region eu-west-2` and override with `-c bedrockRegions=a,b,c`.
 */
export const BEDROCK_INFERENCE_PROFILE_ID = 'eu.anthropic.claude-opus-4-5-20251101-v1:0';
export const BEDROCK_FOUNDATION_MODEL_ID = 'anthropic.claude-opus-4-5-20251101-v1:0';
export const BEDROCK_EU_DESTINATION_REGIONS: readonly string[] = [
  'eu-central-1',
  'eu-central-2',
  'eu-north-1',
  'eu-south-1',
  'eu-south-2',
  'eu-west-1',
  'eu-west-2',
  'eu-west-3',
];

/**
 * AWS-managed prefix list `com.amazonaws.global.cloudfront.origin-facing`
 * per region (a fixed, published id; resolving it by name would be a synth
 * lookup). The WebSocket ALB admits only these addresses.
 */
export const CLOUDFRONT_ORIGIN_FACING_PREFIX_LISTS: Record<string, string> = {
  'eu-west-2': 'pl-93a247fa',
};

/** Everything the app reads from `-c key=value`, validated. */
export interface Settings {
  readonly env: EnvConfig;
  readonly account: string;
  readonly availabilityZones: string[];
  /** Image tag to run (push `treven:<tag>` first; README "Image"). */
  readonly imageTag: string;
  /** Create the Bedrock AgentCore runtime for the `<tag>-arm64` image. */
  readonly agentCore: boolean;
  readonly bedrockRegions: readonly string[];
  readonly cloudFrontPrefixListId: string;
  /** Optional custom domain for CloudFront with its us-east-1 ACM certificate. */
  readonly domainName?: string;
  readonly certificateArn?: string;
  /** Optional eu-west-2 ACM certificate for an HTTPS listener on the WebSocket ALB. */
  readonly wsOriginDomainName?: string;
  readonly wsCertificateArn?: string;
  /** Optional AWS WAF web ACL (scope CLOUDFRONT, made in us-east-1) for the distribution. */
  readonly webAclArn?: string;
  /** Cognito hosted-UI domain prefix (globally unique per region). */
  readonly authDomainPrefix: string;
  /** Optional OpenTelemetry collector endpoint given to every task. */
  readonly otlpEndpoint?: string;
  /** Optional SNS topic the CloudWatch alarms notify (lib/observability.ts); absent: alarms only change state. */
  readonly alarmTopicArn?: string;
  /** Google Cloud project of the optional Gemini secondary model; absent: no secondary. */
  readonly geminiProject?: string;
  /** Mesh CA rotation in progress: the seed version stage every task also trusts. */
  readonly meshCaAlsoTrust?: MeshCaAlsoTrust;
  /** Generation of the mesh signing keys; a new number makes new keys (README "Rotating secrets"). */
  readonly meshKeyGeneration: number;
  /** With a new generation: publish its public keys but keep signing with the current keys. */
  readonly meshKeyPublishOnly: boolean;
  /** Keep publishing the previous generation's public keys (false after a rotation has rolled out). */
  readonly meshKeyKeepPrevious: boolean;
}

function str(node: Node, key: string): string | undefined {
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return undefined;
  return String(v);
}

/** Reads and validates the context; throws a readable error on bad input. */
export function readSettings(node: Node): Settings {
  const envName = str(node, 'env');
  if (envName === undefined || !(ENV_NAMES as readonly string[]).includes(envName)) {
    throw new Error(`pass the environment with -c env=dev or -c env=prod (got ${JSON.stringify(envName)})`);
  }
  const env = ENV_CONFIGS[envName as EnvName];
  const account = str(node, 'account') ?? PLACEHOLDER_ACCOUNT;
  if (!/^\d{12}$/.test(account)) throw new Error(`-c account must be 12 digits (got ${account})`);

  // The AZ list comes from cdk.context.json (the standard cache key for this
  // account), else the committed placeholder entry, else the constant: the
  // app never performs an availability-zone lookup.
  const azKey = (acct: string) => `availability-zones:account=${acct}:region=${REGION}`;
  const azs = (node.tryGetContext(azKey(account)) ?? node.tryGetContext(azKey(PLACEHOLDER_ACCOUNT)) ??
    DEFAULT_AVAILABILITY_ZONES) as string[];

  const flag = (key: string) => ['true', '1', 'yes'].includes(String(node.tryGetContext(key) ?? 'false').toLowerCase());
  const bedrockRegions = str(node, 'bedrockRegions')?.split(',').map((s) => s.trim()).filter(Boolean) ??
    BEDROCK_EU_DESTINATION_REGIONS;

  const domainName = str(node, 'domainName');
  const certificateArn = str(node, 'certificateArn');
  if ((domainName === undefined) !== (certificateArn === undefined)) {
    throw new Error('-c domainName and -c certificateArn (us-east-1) go together');
  }
  const wsOriginDomainName = str(node, 'wsOriginDomainName');
  const wsCertificateArn = str(node, 'wsCertificateArn');
  if ((wsOriginDomainName === undefined) !== (wsCertificateArn === undefined)) {
    throw new Error('-c wsOriginDomainName and -c wsCertificateArn (eu-west-2) go together');
  }

  const geminiProject = str(node, 'geminiProject');
  // Google Cloud project ids: 6-30 lowercase letters, digits and hyphens.
  if (geminiProject !== undefined && !/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(geminiProject)) {
    throw new Error(`-c geminiProject must be a Google Cloud project id (got ${geminiProject})`);
  }
  const meshCaAlsoTrust = str(node, 'meshCaAlsoTrust');
  if (meshCaAlsoTrust !== undefined && !(MESH_CA_ALSO_TRUST_STAGES as readonly string[]).includes(meshCaAlsoTrust)) {
    throw new Error(`-c meshCaAlsoTrust must be AWSPENDING or AWSPREVIOUS (got ${meshCaAlsoTrust})`);
  }

  const meshKeyGeneration = str(node, 'meshKeyGeneration') ?? '1';
  if (!/^[1-9][0-9]{0,8}$/.test(meshKeyGeneration)) {
    throw new Error(`-c meshKeyGeneration must be a positive integer (got ${meshKeyGeneration})`);
  }
  const bool = (key: string, fallback: boolean): boolean => {
    const v = str(node, key);
    if (v === undefined) return fallback;
    if (v === 'true') return true;
    if (v === 'false') return false;
    throw new Error(`-c ${key} must be true or false (got ${v})`);
  };

  return {
    env,
    account,
    availabilityZones: [...azs],
    imageTag: str(node, 'imageTag') ?? 'latest',
    agentCore: flag('agentCore'),
    bedrockRegions,
    cloudFrontPrefixListId: str(node, 'cloudFrontPrefixListId') ?? CLOUDFRONT_ORIGIN_FACING_PREFIX_LISTS[REGION],
    domainName,
    certificateArn,
    wsOriginDomainName,
    wsCertificateArn,
    webAclArn: str(node, 'webAclArn'),
    authDomainPrefix: str(node, 'authDomainPrefix') ?? `treven-${env.envName}-${account}`,
    otlpEndpoint: str(node, 'otlpEndpoint'),
    alarmTopicArn: str(node, 'alarmTopicArn'),
    geminiProject,
    meshCaAlsoTrust: meshCaAlsoTrust as MeshCaAlsoTrust | undefined,
    meshKeyGeneration: Number(meshKeyGeneration),
    meshKeyPublishOnly: bool('meshKeyPublishOnly', false),
    meshKeyKeepPrevious: bool('meshKeyKeepPrevious', true),
  };
}
