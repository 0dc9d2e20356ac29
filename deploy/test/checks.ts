/**
 * The architecture as executable checks on a synthesised template: one
 * function per line group of AWS-ARCHITECTURE.md "Service Configuration"
 * and "Security". Each throws with a readable message when the template
 * breaks the rule. architecture.test.ts runs them on dev and prod;
 * mutation.test.ts proves each one fails on a template broken on purpose.
 */
import { TemplateJson } from './synth';

/* eslint-disable @typescript-eslint/no-explicit-any */

export interface CheckContext {
  readonly env: 'dev' | 'prod';
}

export type Check = (t: TemplateJson, ctx: CheckContext) => void;

export class CheckFailed extends Error {}

function fail(msg: string): never {
  throw new CheckFailed(msg);
}

function expect_(cond: unknown, msg: string): void {
  if (!cond) fail(msg);
}

/** [logicalId, properties] of every resource of a type. */
export function resources(t: TemplateJson, type: string): [string, any][] {
  return Object.entries(t.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

/** The logical id inside `{Ref: X}` or `{Fn::GetAtt: [X, ...]}`. */
export function refOf(v: any): string | undefined {
  if (v && typeof v === 'object') {
    if (typeof v.Ref === 'string') return v.Ref;
    if (Array.isArray(v['Fn::GetAtt'])) return v['Fn::GetAtt'][0];
  }
  return undefined;
}

function asList<T>(v: T | T[] | undefined): T[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** Strings anywhere in a value (for "mentions" checks on Fn::Join etc.). */
function flatten(v: any): string {
  return JSON.stringify(v);
}

const SERVICE_PORTS = [8080, 8081, 50051, 50052, 50053, 50054];

/** Whether a task definition is the one-off migrate task (no service runs it). */
export const isMigrateTask = (p: any) => String(p.Family).endsWith('-migrate');

/** The task definitions the six ECS services run (the migrate task excluded). */
export function serviceTaskDefinitions(t: TemplateJson): [string, any][] {
  return resources(t, 'AWS::ECS::TaskDefinition').filter(([, p]) => !isMigrateTask(p));
}
const STORE_PORTS = [5432, 6379];

// --- Region ------------------------------------------------------------------------------

/** Everything is in eu-west-2: subnets' AZs, the Cognito issuer, the Bedrock profile. */
export const region: Check = (t) => {
  const subnets = resources(t, 'AWS::EC2::Subnet');
  expect_(subnets.length >= 6, 'expected subnets in at least two AZs');
  for (const [id, p] of subnets) {
    expect_(typeof p.AvailabilityZone === 'string' && /^eu-west-2[a-c]$/.test(p.AvailabilityZone),
      `subnet ${id} is in ${JSON.stringify(p.AvailabilityZone)}, not eu-west-2`);
  }
  const [[, authorizer]] = resources(t, 'AWS::ApiGatewayV2::Authorizer');
  expect_(flatten(authorizer.JwtConfiguration?.Issuer).includes('https://cognito-idp.eu-west-2.'),
    'the JWT issuer is not the eu-west-2 Cognito endpoint');
  const profile = flatten(t.Resources).match(/arn:aws:bedrock:([a-z0-9-]+):\d{12}:inference-profile\//);
  expect_(profile && profile[1] === 'eu-west-2', 'the Bedrock inference profile is not called in eu-west-2');
};

// --- CloudFront --------------------------------------------------------------------------

/** One HTTPS distribution: S3 (OAC) default, API and WebSocket behaviours. */
export const cloudFront: Check = (t) => {
  const dists = resources(t, 'AWS::CloudFront::Distribution');
  expect_(dists.length === 1, 'expected exactly one CloudFront distribution (one public URL)');
  const cfg = dists[0][1].DistributionConfig;
  const origins: any[] = cfg.Origins;
  const originById = (id: string) => origins.find((o) => o.Id === id) ?? fail(`unknown origin ${id}`);

  const def = cfg.DefaultCacheBehavior;
  expect_(def.ViewerProtocolPolicy === 'redirect-to-https', 'default behaviour must redirect to HTTPS');
  const s3 = originById(def.TargetOriginId);
  expect_(s3.S3OriginConfig && s3.OriginAccessControlId, 'the site origin must be S3 with origin access control');

  const behaviours: any[] = cfg.CacheBehaviors ?? [];
  for (const b of behaviours) {
    expect_(b.ViewerProtocolPolicy !== 'allow-all', `behaviour ${b.PathPattern} allows plain HTTP`);
  }
  const byPath = (p: string) => behaviours.find((b) => b.PathPattern === p) ?? fail(`no CloudFront behaviour for ${p}`);
  const api = originById(byPath('/api/*').TargetOriginId);
  expect_(flatten(api.DomainName).includes('.execute-api.eu-west-2.'), '/api/* must go to the API Gateway endpoint');
  expect_(api.CustomOriginConfig?.OriginProtocolPolicy === 'https-only', 'the API origin must be HTTPS-only');
  const apiB = byPath('/api/*');
  expect_(asList(apiB.AllowedMethods).includes('POST'), '/api/* must allow POST/PATCH/DELETE');

  const ws = byPath('/ws');
  const wsOrigin = originById(ws.TargetOriginId);
  const alb = refOf(wsOrigin.DomainName);
  const toAlb = alb !== undefined && t.Resources[alb]?.Type === 'AWS::ElasticLoadBalancingV2::LoadBalancer';
  const toAlbDomain = wsOrigin.CustomOriginConfig?.OriginProtocolPolicy === 'https-only'; // -c wsOriginDomainName
  expect_(toAlb || toAlbDomain, '/ws must go to the WebSocket ALB');
  // All viewer headers (managed AllViewer policy) so Upgrade / Sec-WebSocket-* reach the origin.
  expect_(ws.OriginRequestPolicyId === '216adef6-5c7f-47e4-b989-5492eafa07d3', '/ws must forward all viewer headers (WebSocket upgrade)');
  expect_(ws.CachePolicyId === '4135ea2d-6df8-44a3-9df3-4b5a84be39ad', '/ws must not be cached');

  for (const o of origins) {
    if (o.CustomOriginConfig) {
      const protos: string[] = o.CustomOriginConfig.OriginSSLProtocols ?? [];
      expect_(protos.every((p) => p === 'TLSv1.2'), `origin ${o.Id} allows TLS below 1.2`);
    }
  }
  expect_(cfg.Logging?.Bucket, 'CloudFront access logging must be on');
};

// --- Cognito ------------------------------------------------------------------------------

/** User pool with immutable custom:orgId, the three groups, a code+PKCE public client. */
export const cognito: Check = (t) => {
  const pools = resources(t, 'AWS::Cognito::UserPool');
  expect_(pools.length === 1, 'expected one Cognito user pool');
  const pool = pools[0][1];
  const orgId = (pool.Schema ?? []).find((a: any) => a.Name === 'orgId') ?? fail('user pool has no orgId attribute');
  expect_(orgId.Mutable === false, 'custom:orgId must be immutable');
  expect_(orgId.AttributeDataType === 'String', 'custom:orgId must be a string');
  expect_(pool.MfaConfiguration === 'ON', 'MFA must be required');
  expect_(pool.AdminCreateUserConfig?.AllowAdminCreateUserOnly === true, 'self sign-up must be off');

  const groups = resources(t, 'AWS::Cognito::UserPoolGroup').map(([, p]) => p.GroupName).sort();
  expect_(JSON.stringify(groups) === JSON.stringify(['admin', 'analyst', 'viewer']), `groups are ${groups}`);

  const clients = resources(t, 'AWS::Cognito::UserPoolClient');
  expect_(clients.length === 1, 'expected one app client');
  const c = clients[0][1];
  expect_(JSON.stringify(c.AllowedOAuthFlows) === '["code"]', 'the app client must use the authorization-code grant only');
  expect_(c.GenerateSecret === false, 'a browser (PKCE) client must not have a secret');
  expect_(c.AllowedOAuthFlowsUserPoolClient === true, 'OAuth must be enabled on the client');
  expect_(asList(c.AllowedOAuthScopes).includes('openid'), 'OIDC needs the openid scope');
  expect_(resources(t, 'AWS::Cognito::UserPoolDomain').length === 1, 'the hosted UI needs a domain');
};

// --- API Gateway ------------------------------------------------------------------------------

/** HTTP API, Cognito JWT authorizer on every route but the gateway's public ones, throttling, VPC link. */
export const apiGateway: Check = (t) => {
  const apis = resources(t, 'AWS::ApiGatewayV2::Api');
  expect_(apis.length === 1 && apis[0][1].ProtocolType === 'HTTP', 'expected one HTTP API');
  const authorizers = resources(t, 'AWS::ApiGatewayV2::Authorizer');
  expect_(authorizers.length === 1 && authorizers[0][1].AuthorizerType === 'JWT', 'expected one JWT authorizer');
  const auth = authorizers[0][1];
  const client = refOf(asList(auth.JwtConfiguration?.Audience)[0]);
  expect_(client && t.Resources[client]?.Type === 'AWS::Cognito::UserPoolClient', 'the JWT audience must be the Cognito app client');
  const authId = authorizers[0][0];

  const publicRoutes = ['GET /healthz', 'GET /readyz', 'GET /openapi.json', 'GET /shared/{token}'];
  const routes = resources(t, 'AWS::ApiGatewayV2::Route');
  expect_(routes.some(([, r]) => r.RouteKey === 'ANY /{proxy+}'), 'the catch-all route is missing');
  for (const [, r] of routes) {
    if (publicRoutes.includes(r.RouteKey)) continue;
    expect_(r.AuthorizationType === 'JWT' && refOf(r.AuthorizerId) === authId, `route ${r.RouteKey} is not behind the Cognito JWT authorizer`);
  }

  const stages = resources(t, 'AWS::ApiGatewayV2::Stage');
  expect_(stages.length === 1, 'expected one stage');
  const s = stages[0][1].DefaultRouteSettings ?? {};
  expect_(s.ThrottlingRateLimit > 0 && s.ThrottlingBurstLimit > 0, 'the stage must be throttled');
  expect_(stages[0][1].AccessLogSettings?.DestinationArn, 'API access logging must be on');

  const integrations = resources(t, 'AWS::ApiGatewayV2::Integration');
  expect_(integrations.length >= 1, 'no integration');
  for (const [, i] of integrations) {
    expect_(i.ConnectionType === 'VPC_LINK', 'integrations must go through the VPC link');
    const listener = refOf(i.IntegrationUri);
    expect_(listener && t.Resources[listener]?.Type === 'AWS::ElasticLoadBalancingV2::Listener', 'integration must target the internal ALB listener');
  }
};

// --- ECS -------------------------------------------------------------------------------------

const EXPECTED_SERVICES: Record<string, { target: string; port: number }> = {
  'gateway-api': { target: 'gateway', port: 8080 },
  'gateway-ws': { target: 'gateway', port: 8081 },
  tenants: { target: 'tenants', port: 50051 },
  documents: { target: 'documents', port: 50052 },
  reports: { target: 'reports', port: 50053 },
  agents: { target: 'agents', port: 50054 },
};

/** Six Fargate services with circuit breaker, CPU+memory autoscaling, Cloud Map, logs. */
export const ecs: Check = (t) => {
  const taskDefs = serviceTaskDefinitions(t);
  const services = resources(t, 'AWS::ECS::Service');
  expect_(services.length === 6 && taskDefs.length === 6, `expected 6 ECS services, found ${services.length}`);
  for (const [name, want] of Object.entries(EXPECTED_SERVICES)) {
    const td = taskDefs.find(([, p]) => String(p.Family).endsWith(`-${name}`)) ?? fail(`no task definition for ${name}`);
    const c = td[1].ContainerDefinitions[0];
    expect_(JSON.stringify(c.Command) === JSON.stringify(['serve', '--target', want.target]), `${name} must run serve --target ${want.target}`);
    expect_(c.PortMappings?.[0]?.ContainerPort === want.port, `${name} must listen on ${want.port}`);
    expect_(c.LogConfiguration?.LogDriver === 'awslogs', `${name} must log to CloudWatch`);
    expect_(td[1].RequiresCompatibilities?.includes('FARGATE'), `${name} must be Fargate`);
  }
  for (const [id, s] of services) {
    const cb = s.DeploymentConfiguration?.DeploymentCircuitBreaker;
    expect_(cb?.Enable === true && cb?.Rollback === true, `service ${id} must deploy with the circuit breaker and rollback`);
    expect_(s.NetworkConfiguration?.AwsvpcConfiguration?.AssignPublicIp === 'DISABLED', `service ${id} must not get a public IP`);
  }
  const targets = resources(t, 'AWS::ApplicationAutoScaling::ScalableTarget');
  expect_(targets.length === 6, `every service needs a scalable target (found ${targets.length})`);
  const policies = resources(t, 'AWS::ApplicationAutoScaling::ScalingPolicy');
  for (const [tid, target] of targets) {
    expect_(target.MaxCapacity > target.MinCapacity, `scalable target ${tid} cannot scale`);
    const metrics = policies
      .filter(([, p]) => refOf(p.ScalingTargetId) === tid)
      .map(([, p]) => p.TargetTrackingScalingPolicyConfiguration?.PredefinedMetricSpecification?.PredefinedMetricType);
    expect_(metrics.includes('ECSServiceAverageCPUUtilization') && metrics.includes('ECSServiceAverageMemoryUtilization'),
      `scalable target ${tid} must scale on CPU and memory`);
  }
  const ns = resources(t, 'AWS::ServiceDiscovery::PrivateDnsNamespace');
  expect_(ns.length === 1 && ns[0][1].Name === 'treven.internal', 'Cloud Map namespace treven.internal is missing');
  const discovered = resources(t, 'AWS::ServiceDiscovery::Service').map(([, p]) => p.Name).sort();
  expect_(JSON.stringify(discovered) === JSON.stringify(['agents', 'documents', 'reports', 'tenants']), `Cloud Map services are ${discovered}`);

  const albs = resources(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
  const wsAlb = albs.find(([, p]) => p.Scheme === 'internet-facing') ?? fail('no WebSocket ALB');
  const idle = (wsAlb[1].LoadBalancerAttributes ?? []).find((a: any) => a.Key === 'idle_timeout.timeout_seconds');
  expect_(idle && Number(idle.Value) >= 3600, 'the WebSocket ALB idle timeout must suit WebSockets (>= 3600 s)');
  expect_(albs.some(([, p]) => p.Scheme === 'internal'), 'the API ALB must be internal');
};

// --- ECR -------------------------------------------------------------------------------------

/** Repository with scan on push and lifecycle rules (registry template). */
export const ecr: Check = (t) => {
  const repos = resources(t, 'AWS::ECR::Repository');
  expect_(repos.length === 1, 'expected one ECR repository');
  const r = repos[0][1];
  const rules = JSON.parse(r.LifecyclePolicy?.LifecyclePolicyText ?? '{"rules":[]}').rules;
  expect_(rules.length >= 1, 'ECR needs lifecycle rules');
  expect_(r.ImageScanningConfiguration?.ScanOnPush === true, 'ECR must scan on push');
};

// --- S3 --------------------------------------------------------------------------------------

function bucketPolicyDeniesInsecure(t: TemplateJson, bucketId: string): boolean {
  return resources(t, 'AWS::S3::BucketPolicy').some(
    ([, p]) =>
      refOf(p.Bucket) === bucketId &&
      (p.PolicyDocument?.Statement ?? []).some(
        (s: any) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false',
      ),
  );
}

/** `treven-data-{env}`: SSE-S3, versioning, public access blocked, TLS only; every bucket encrypted and private. */
export const s3: Check = (t, ctx) => {
  const buckets = resources(t, 'AWS::S3::Bucket');
  const data = buckets.find(([, p]) => p.BucketName === `treven-data-${ctx.env}`) ?? fail(`bucket treven-data-${ctx.env} is missing`);
  const [dataId, p] = data;
  const sse = p.BucketEncryption?.ServerSideEncryptionConfiguration?.[0]?.ServerSideEncryptionByDefault?.SSEAlgorithm;
  expect_(sse === 'AES256', 'treven-data must use SSE-S3');
  expect_(p.VersioningConfiguration?.Status === 'Enabled', 'treven-data must be versioned');
  const cors = p.CorsConfiguration?.CorsRules ?? [];
  expect_(cors.some((r: any) => asList(r.AllowedMethods).includes('PUT')), 'treven-data needs CORS for presigned browser uploads');
  for (const [id, b] of buckets) {
    const pab = b.PublicAccessBlockConfiguration ?? {};
    expect_(pab.BlockPublicAcls && pab.BlockPublicPolicy && pab.IgnorePublicAcls && pab.RestrictPublicBuckets,
      `bucket ${id} must block all public access`);
    expect_(b.BucketEncryption?.ServerSideEncryptionConfiguration?.length, `bucket ${id} must be encrypted at rest`);
    expect_(bucketPolicyDeniesInsecure(t, id), `bucket ${id} must deny non-TLS requests`);
  }
  expect_(bucketPolicyDeniesInsecure(t, dataId), 'treven-data must deny non-TLS requests');
};

// --- DynamoDB ----------------------------------------------------------------------------------

/** Tables: on demand, PITR, encryption, TTL. */
export const dynamodb: Check = (t, ctx) => {
  const tables = resources(t, 'AWS::DynamoDB::Table');
  expect_(tables.length >= 2, 'expected the documents and agents tables');
  for (const [id, p] of tables) {
    expect_(p.BillingMode === 'PAY_PER_REQUEST', `table ${id} must be on demand`);
    expect_(p.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled === true, `table ${id} must have PITR`);
    expect_(p.SSESpecification?.SSEEnabled === true, `table ${id} must be encrypted (AWS-managed key)`);
    expect_(p.TimeToLiveSpecification?.Enabled === true, `table ${id} must have a TTL attribute`);
    expect_(String(p.TableName).endsWith(`-${ctx.env}`), `table ${id} is not named for ${ctx.env}`);
  }
};

// --- RDS --------------------------------------------------------------------------------------

/** PostgreSQL db.t3.medium, Multi-AZ in prod only, backups, encryption, TLS, secret credentials. */
export const rds: Check = (t, ctx) => {
  const dbs = resources(t, 'AWS::RDS::DBInstance');
  expect_(dbs.length === 1, 'expected one RDS instance');
  const p = dbs[0][1];
  expect_(p.Engine === 'postgres', 'RDS engine must be PostgreSQL');
  expect_(/^1[7-9]/.test(String(p.EngineVersion)), `PostgreSQL ${p.EngineVersion} is not current (17+)`);
  expect_(p.DBInstanceClass === 'db.t3.medium', `RDS class is ${p.DBInstanceClass}`);
  expect_(p.MultiAZ === (ctx.env === 'prod'), `RDS Multi-AZ must be ${ctx.env === 'prod'} in ${ctx.env}`);
  expect_(p.StorageEncrypted === true, 'RDS storage must be encrypted');
  expect_(Number(p.BackupRetentionPeriod) >= 7, 'RDS automated backups must be kept at least 7 days');
  expect_(p.PubliclyAccessible !== true, 'RDS must not be public');
  expect_(flatten(p.MasterUserPassword).includes('{{resolve:secretsmanager:'), 'RDS credentials must come from Secrets Manager');
  const pg = refOf(p.DBParameterGroupName);
  expect_(pg && t.Resources[pg]?.Properties?.Parameters?.['rds.force_ssl'] === '1', 'RDS must require TLS (rds.force_ssl=1)');
};

// --- Redis --------------------------------------------------------------------------------------

/** cache.t3.micro, cluster mode disabled, TLS in transit, encrypted at rest, AUTH. */
export const redis: Check = (t, ctx) => {
  const groups = resources(t, 'AWS::ElastiCache::ReplicationGroup');
  expect_(groups.length === 1, 'expected one Redis replication group');
  const p = groups[0][1];
  expect_(p.Engine === 'redis', 'engine must be Redis');
  expect_(p.CacheNodeType === 'cache.t3.micro', `Redis node type is ${p.CacheNodeType}`);
  expect_((p.NumNodeGroups ?? 1) === 1 && !p.NodeGroupConfiguration, 'Redis cluster mode must be disabled (one node group)');
  expect_(p.TransitEncryptionEnabled === true, 'Redis must encrypt in transit');
  expect_(p.AtRestEncryptionEnabled === true, 'Redis must encrypt at rest');
  expect_(p.AuthToken !== undefined, 'Redis must require an AUTH token');
  expect_(Boolean(p.MultiAZEnabled) === (ctx.env === 'prod'), `Redis Multi-AZ must be ${ctx.env === 'prod'} in ${ctx.env}`);
};

// --- Bedrock --------------------------------------------------------------------------------------

/** The agents role may invoke Claude Opus 4.5 through the EU inference profile, nothing wider. */
export const bedrock: Check = (t) => {
  const statements = resources(t, 'AWS::IAM::Policy').flatMap(([, p]) => p.PolicyDocument.Statement as any[]);
  const invoke = statements.filter((s) => asList(s.Action).some((a: string) => a.startsWith('bedrock:')));
  expect_(invoke.length >= 1, 'no role may invoke Bedrock');
  const resourcesText = flatten(invoke.map((s) => s.Resource));
  expect_(resourcesText.includes('inference-profile/eu.anthropic.claude-opus-4-5-20251101-v1:0'), 'Claude Opus 4.5 EU profile is not granted');
  expect_(resourcesText.includes('foundation-model/anthropic.claude-opus-4-5-20251101-v1:0'), 'the models behind the profile are not granted');
};

// --- Security: network --------------------------------------------------------------------------

const WORLD = ['0.0.0.0/0', '::/0'];

/** No ingress from the world except 80/443 on the public WebSocket ALB; service and store ports only from security groups. */
export const networkIngress: Check = (t) => {
  const albSgs = new Set<string>();
  for (const [, lb] of resources(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer')) {
    if (lb.Scheme === 'internet-facing') asList(lb.SecurityGroups).forEach((g: any) => albSgs.add(refOf(g) ?? ''));
  }
  const rules: { sg: string; rule: any }[] = [];
  for (const [id, p] of resources(t, 'AWS::EC2::SecurityGroup')) {
    for (const rule of p.SecurityGroupIngress ?? []) rules.push({ sg: id, rule });
  }
  for (const [, p] of resources(t, 'AWS::EC2::SecurityGroupIngress')) rules.push({ sg: refOf(p.GroupId) ?? '', rule: p });
  for (const { sg, rule } of rules) {
    const world = WORLD.includes(rule.CidrIp) || WORLD.includes(rule.CidrIpv6);
    const port = Number(rule.FromPort);
    const toPort = Number(rule.ToPort ?? rule.FromPort);
    if (world) {
      expect_(albSgs.has(sg) && (port === 443 || port === 80) && toPort === port,
        `security group ${sg} admits the world on ${rule.IpProtocol}/${rule.FromPort}-${rule.ToPort}`);
    }
    if (rule.CidrIp !== undefined || rule.CidrIpv6 !== undefined || rule.IpProtocol === '-1') {
      for (const p of [...SERVICE_PORTS, ...STORE_PORTS]) {
        const covers = rule.IpProtocol === '-1' || (port <= p && p <= toPort);
        expect_(!covers, `security group ${sg} opens port ${p} to an address range instead of a security group`);
      }
    }
  }
  // Stores: only from the owning services' groups.
  for (const [, p] of resources(t, 'AWS::ElastiCache::ReplicationGroup')) {
    expect_(asList(p.SecurityGroupIds).length === 1, 'Redis must have exactly its own security group');
  }
};

/** Data stores in isolated subnets, tasks in private subnets. */
export const privateSubnets: Check = (t) => {
  const subnetType = (id: string | undefined) => {
    const tags: any[] = (id && t.Resources[id]?.Properties?.Tags) || [];
    return tags.find((x) => x.Key === 'aws-cdk:subnet-type')?.Value;
  };
  for (const [id, s] of resources(t, 'AWS::ECS::Service')) {
    for (const subnet of asList(s.NetworkConfiguration?.AwsvpcConfiguration?.Subnets)) {
      expect_(subnetType(refOf(subnet)) === 'Private', `service ${id} runs in a non-private subnet`);
    }
  }
  for (const [id, g] of [...resources(t, 'AWS::RDS::DBSubnetGroup'), ...resources(t, 'AWS::ElastiCache::SubnetGroup')]) {
    for (const subnet of asList(g.SubnetIds)) {
      expect_(subnetType(refOf(subnet)) === 'Isolated', `subnet group ${id} uses a subnet with a route out`);
    }
  }
};

// --- Security: IAM --------------------------------------------------------------------------------

const SCOPED_SERVICES = ['s3:', 'dynamodb:', 'bedrock:', 'secretsmanager:'];

/** No wildcard actions; data-plane actions never on Resource "*". */
export const iamLeastPrivilege: Check = (t) => {
  const policies = [
    ...resources(t, 'AWS::IAM::Policy').map(([id, p]) => [id, p.PolicyDocument] as [string, any]),
    ...resources(t, 'AWS::IAM::Role').flatMap(([id, r]) => (r.Policies ?? []).map((p: any) => [id, p.PolicyDocument] as [string, any])),
  ];
  for (const [id, doc] of policies) {
    for (const s of doc.Statement as any[]) {
      if (s.Effect !== 'Allow') continue;
      const actions: string[] = asList(s.Action);
      for (const a of actions) {
        expect_(a !== '*' && !/^[a-z0-9-]+:\*$/.test(a), `policy ${id} grants the wildcard action ${a}`);
      }
      const star = asList(s.Resource).some((r: any) => r === '*');
      if (star) {
        const scoped = actions.filter((a) => SCOPED_SERVICES.some((svc) => a.startsWith(svc)));
        expect_(scoped.length === 0, `policy ${id} grants ${scoped.join(', ')} on every resource`);
      }
    }
  }
  // One task role per service.
  const roles = new Set(serviceTaskDefinitions(t).map(([, p]) => refOf(p.TaskRoleArn)));
  expect_(roles.size === 6, 'every ECS service needs its own task role');
};

// --- Security: secrets ------------------------------------------------------------------------------

/** No secret in plain container environment; the mesh key is a Secrets Manager secret. */
export const secrets: Check = (t) => {
  for (const [, td] of resources(t, 'AWS::ECS::TaskDefinition')) {
    for (const c of td.ContainerDefinitions) {
      for (const e of c.Environment ?? []) {
        const sensitive = /(PASSWORD|SECRET|TOKEN|PRIVATE_KEY)/.test(e.Name) && !e.Name.endsWith('_SECRET_ID');
        expect_(!sensitive, `${c.Name ?? 'container'} has ${e.Name} in plain environment`);
        expect_(!/^rediss?:\/\/[^@]*:[^@]+@/.test(String(e.Value)), `${e.Name} embeds a credential`);
      }
    }
  }
  const secretNames = resources(t, 'AWS::SecretsManager::Secret').map(([, p]) => String(p.Name));
  for (const principal of MESH_PRINCIPALS) {
    expect_(secretNames.some((n) => n.endsWith(`/mesh-signing-key/${principal}`)), `the mesh signing key of ${principal} must be in Secrets Manager`);
  }
};

// --- Security: per-principal mesh signing keys ---------------------------------------------

/** The mesh principals, each with its own signing key (lib/config.ts MESH_PRINCIPALS). */
export const MESH_PRINCIPALS = ['gateway', 'tenants', 'documents', 'reports', 'agents', 'agent-runtime', 'operator'];

/** The principal an ECS task family signs as. */
export const principalOfFamily = (family: string) => (family.startsWith('gateway') ? 'gateway' : family);

/** principal → logical id of its signing-key secret. */
export function signingKeySecrets(t: TemplateJson): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [id, p] of resources(t, 'AWS::SecretsManager::Secret')) {
    const m = String(p.Name).match(/\/mesh-signing-key\/([a-z-]+)$/);
    if (m) out[m[1]] = id;
  }
  return out;
}

/** Logical id of the Custom::TrevenMeshKeys resource. */
export function meshKeysResource(t: TemplateJson): string {
  const found = Object.entries(t.Resources).filter(([, r]) => r.Type === 'Custom::TrevenMeshKeys');
  expect_(found.length === 1, `expected one Custom::TrevenMeshKeys resource, found ${found.length}`);
  return found[0][0];
}

/** Every role's policy documents: [role logical id, policy document]. */
function roleDocuments(t: TemplateJson): [string, any][] {
  return [
    ...resources(t, 'AWS::IAM::Policy').flatMap(([, p]) => asList(p.Roles).map((r: any) => [refOf(r) ?? '', p.PolicyDocument] as [string, any])),
    ...resources(t, 'AWS::IAM::Role').flatMap(([id, r]) => (r.Policies ?? []).map((p: any) => [id, p.PolicyDocument] as [string, any])),
  ];
}

/** role logical id → the principals whose signing key its policies name. */
export function signingKeyReaders(t: TemplateJson): Map<string, Set<string>> {
  const secrets = signingKeySecrets(t);
  const readers = new Map<string, Set<string>>();
  for (const [role, doc] of roleDocuments(t)) {
    const text = flatten(doc);
    for (const [principal, id] of Object.entries(secrets)) {
      if (text.includes(`"Ref":"${id}"`)) {
        if (!readers.has(role)) readers.set(role, new Set());
        readers.get(role)!.add(principal);
      }
    }
  }
  return readers;
}

/**
 * Per-principal mesh signing keys (issue #19): an empty secret per principal
 * that only the Custom::TrevenMeshKeys Lambda writes; every task (and the
 * AgentCore runtime) gets its own principal's secret ARN and every public
 * key from the custom resource; each task role may read its own principal's
 * secret only, execution roles none, no task the operator's.
 */
export const meshSigningKeys: Check = (t) => {
  const secrets = signingKeySecrets(t);
  expect_(JSON.stringify(Object.keys(secrets).sort()) === JSON.stringify([...MESH_PRINCIPALS].sort()),
    `signing-key secrets are for ${Object.keys(secrets).sort()}, expected ${[...MESH_PRINCIPALS].sort()}`);
  for (const [principal, id] of Object.entries(secrets)) {
    const p = t.Resources[id].Properties;
    expect_(p.SecretString === undefined && p.GenerateSecretString === undefined,
      `the signing key of ${principal} must be created empty (only the custom resource writes it)`);
  }
  const cr = meshKeysResource(t);
  const props = t.Resources[cr].Properties;
  for (const principal of MESH_PRINCIPALS) {
    expect_(refOf(props.Secrets?.[principal]) === secrets[principal], `the custom resource must write ${principal}'s secret`);
  }
  const publicKeys = (v: any) => Array.isArray(v?.['Fn::GetAtt']) && v['Fn::GetAtt'][0] === cr && v['Fn::GetAtt'][1] === 'PublicKeys';

  // Who may read which key: task role → its principal; the key Lambda → all; nobody else.
  const allowed = new Map<string, string[]>();
  for (const [, td] of resources(t, 'AWS::ECS::TaskDefinition')) {
    const family = String(td.Family).replace(/^treven-(dev|prod)-/, '');
    allowed.set(refOf(td.TaskRoleArn) ?? '', isMigrateTask(td) ? [] : [principalOfFamily(family)]);
    allowed.set(refOf(td.ExecutionRoleArn) ?? '', []);
  }
  for (const [, rt] of resources(t, 'AWS::BedrockAgentCore::Runtime')) allowed.set(refOf(rt.RoleArn) ?? '', ['agent-runtime']);
  const handler = refOf(props.ServiceToken) ?? '';
  const lambdaRole = refOf(t.Resources[handler]?.Properties?.Role) ?? '';
  expect_(lambdaRole !== '', 'the custom resource must be backed by a Lambda function with its own role');
  allowed.set(lambdaRole, [...MESH_PRINCIPALS]);
  for (const [role, principals] of signingKeyReaders(t)) {
    const may = allowed.get(role) ?? [];
    const extra = [...principals].filter((p) => !may.includes(p));
    expect_(extra.length === 0, `role ${role} may read the signing key of ${extra.join(', ')}`);
  }
  // The Lambda may touch only the signing keys.
  const lambdaDocs = roleDocuments(t).filter(([role]) => role === lambdaRole).map(([, doc]) => doc);
  for (const doc of lambdaDocs) {
    for (const st of doc.Statement as any[]) {
      for (const r of asList(st.Resource)) {
        expect_(Object.values(secrets).includes(refOf(r) ?? ''), `the mesh-keys Lambda may act on ${flatten(r)}, not a signing key`);
      }
    }
  }

  for (const task of taskEnvironments(t)) {
    const principal = principalOfFamily(task.family);
    expect_(refOf(task.vars.TREVEN_MESH_SIGNING_KEY_SECRET_ID) === secrets[principal],
      `${task.family} must read the signing key of ${principal} (TREVEN_MESH_SIGNING_KEY_SECRET_ID)`);
    expect_(publicKeys(task.vars.TREVEN_MESH_PUBLIC_KEYS), `${task.family} must get TREVEN_MESH_PUBLIC_KEYS from the custom resource`);
    const stray = [...Object.keys(task.vars), ...Object.keys(task.secrets)].filter((n) => n.startsWith('TREVEN_MESH_KEY') || n === 'TREVEN_MESH_SIGNING_KEYS');
    expect_(stray.length === 0, `${task.family} has ${stray.join(', ')}`);
    expect_(!flatten(task.secrets).includes('mesh-signing-key') && !Object.values(secrets).some((id) => flatten(task.secrets).includes(`"${id}"`)),
      `${task.family} gets a signing key injected by ECS (its execution role would read it)`);
  }
  for (const vars of runtimeEnvironments(t)) {
    expect_(refOf(vars.TREVEN_MESH_SIGNING_KEY_SECRET_ID) === secrets['agent-runtime'], 'AgentCore must read the agent-runtime signing key');
    expect_(publicKeys(vars.TREVEN_MESH_PUBLIC_KEYS), 'AgentCore must get TREVEN_MESH_PUBLIC_KEYS from the custom resource');
  }
};

// --- Security: TLS on every hop and what each task is given -------------------------------

/** One container's plain variables and its ECS secrets, by task family suffix (`tenants`, ...). */
export interface TaskEnv {
  readonly family: string;
  readonly port: number;
  readonly vars: Record<string, any>;
  readonly secrets: Record<string, any>;
}

/** The services' tasks (the one-off migrate task is {@link migrateEnvironment}). */
export function taskEnvironments(t: TemplateJson): TaskEnv[] {
  return allTaskEnvironments(t).filter((task) => task.family !== 'migrate');
}

/** The migrate task's environment. */
export function migrateEnvironment(t: TemplateJson): TaskEnv {
  const found = allTaskEnvironments(t).filter((task) => task.family === 'migrate');
  expect_(found.length === 1, `expected one migrate task definition, found ${found.length}`);
  return found[0];
}

function allTaskEnvironments(t: TemplateJson): TaskEnv[] {
  return resources(t, 'AWS::ECS::TaskDefinition').map(([, td]) => {
    const c = td.ContainerDefinitions[0];
    return {
      family: String(td.Family).replace(/^treven-(dev|prod)-/, ''),
      port: Number(c.PortMappings?.[0]?.ContainerPort),
      vars: Object.fromEntries((c.Environment ?? []).map((e: any) => [e.Name, e.Value])),
      secrets: Object.fromEntries((c.Secrets ?? []).map((e: any) => [e.Name, e.ValueFrom])),
    };
  });
}

/** The AgentCore runtime's variables (plain text), when it is deployed. */
function runtimeEnvironments(t: TemplateJson): Record<string, any>[] {
  return resources(t, 'AWS::BedrockAgentCore::Runtime').map(([, p]) => p.EnvironmentVariables ?? {});
}

const GRPC_PORT_RANGE = [50051, 50054];

/** A plain string or an Fn::Join of strings and references, references shown as `<ref>`. */
function joined(v: any): string {
  if (typeof v === 'string') return v;
  if (v && Array.isArray(v['Fn::Join'])) return (v['Fn::Join'][1] as any[]).map(joined).join(v['Fn::Join'][0]);
  return '<ref>';
}

/**
 * Mesh TLS: every upstream URL is https to a Cloud Map name; every task gets
 * the mesh CA seed as an ECS secret (never plain); every gRPC server names
 * the Cloud Map name its leaf certificate is issued for.
 */
export const meshTls: Check = (t) => {
  const tasks = taskEnvironments(t);
  expect_(tasks.length === 6, 'expected six task definitions');
  const secretIds = new Set(resources(t, 'AWS::SecretsManager::Secret')
    .filter(([, p]) => String(p.Name).endsWith('/mesh-ca-seed')).map(([id]) => id));
  expect_(secretIds.size === 1, 'the mesh CA seed must be one Secrets Manager secret');
  for (const task of tasks) {
    for (const [name, value] of Object.entries(task.vars)) {
      if (/^TREVEN_[A-Z]+_URL$/.test(name) && name !== 'TREVEN_REDIS_URL') {
        expect_(/^https:\/\/[a-z]+\.treven\.internal:\d+$/.test(String(value)), `${task.family}: ${name}=${value} is not an https Cloud Map URL`);
      }
    }
    expect_(task.vars.TREVEN_MESH_CA_SEED === undefined, `${task.family} has the mesh CA seed in plain environment`);
    const seed = task.secrets.TREVEN_MESH_CA_SEED;
    expect_(seed !== undefined, `${task.family} is not given TREVEN_MESH_CA_SEED as a secret`);
    expect_(secretIds.has(refOf(seed) ?? ''), `${task.family}: TREVEN_MESH_CA_SEED is not the mesh CA seed secret`);
    const isGrpc = task.port >= GRPC_PORT_RANGE[0] && task.port <= GRPC_PORT_RANGE[1];
    if (isGrpc) {
      const names = String(task.vars.TREVEN_MESH_TLS_NAMES ?? '').split(',');
      expect_(names[0] === `${task.family}.treven.internal`, `${task.family} must serve mesh TLS as ${task.family}.treven.internal`);
    } else {
      expect_(task.vars.TREVEN_MESH_TLS_NAMES === undefined, `${task.family} serves no gRPC and needs no TREVEN_MESH_TLS_NAMES`);
    }
  }
  for (const vars of runtimeEnvironments(t)) {
    for (const [name, value] of Object.entries(vars)) {
      if (/^TREVEN_[A-Z]+_URL$/.test(name)) expect_(String(value).startsWith('https://'), `AgentCore: ${name} is not https`);
    }
    expect_(vars.TREVEN_MESH_CA_SEED === undefined, 'AgentCore has the mesh CA seed in plain text');
    expect_(secretIds.has(refOf(vars.TREVEN_MESH_CA_SEED_SECRET_ID) ?? ''), 'AgentCore must read the mesh CA seed by TREVEN_MESH_CA_SEED_SECRET_ID');
  }
};

/** Postgres: every URL `sslmode=verify-full`, the RDS CA bundle named, the password a secret. */
export const postgresTls: Check = (t) => {
  let users = 0;
  for (const task of taskEnvironments(t)) {
    const urls = Object.entries(task.vars).filter(([name]) => name.endsWith('_DATABASE_URL'));
    for (const [name, value] of urls) {
      users += 1;
      const url = joined(value);
      expect_(/^postgres:\/\/[^/?]+\/treven\?sslmode=verify-full$/.test(url),
        `${task.family}: ${name}=${url} is not postgres://...?sslmode=verify-full`);
      expect_(task.vars.TREVEN_TLS_CA_FILE === '/etc/treven/rds-ca-bundle.pem', `${task.family} must trust the RDS CA bundle (TREVEN_TLS_CA_FILE)`);
      expect_(task.secrets.TREVEN_DATABASE_PASSWORD !== undefined, `${task.family} must get TREVEN_DATABASE_PASSWORD as a secret`);
    }
    if (urls.length === 0) expect_(task.vars.TREVEN_TLS_CA_FILE === undefined, `${task.family} uses no Postgres and needs no TREVEN_TLS_CA_FILE`);
  }
  expect_(users === 2, `expected two Postgres users (tenants, reports), found ${users}`);
};

/** The Postgres services and the login role each uses (deploy/lib/data.ts DB_LOGIN_ROLES). */
export const DB_LOGIN_ROLES: Record<string, string> = { tenants: 'treven_tenants_svc', reports: 'treven_reports_svc' };

/**
 * The logical ids standing for the secret named `name` (the secret and any
 * SecretTargetAttachment of it: both resolve to its ARN).
 */
function secretIds(t: TemplateJson, name: (n: string) => boolean): Set<string> {
  const ids = new Set(resources(t, 'AWS::SecretsManager::Secret').filter(([, p]) => name(String(p.Name))).map(([id]) => id));
  for (const [id, p] of resources(t, 'AWS::SecretsManager::SecretTargetAttachment')) {
    if (ids.has(refOf(p.SecretId) ?? '')) ids.add(id);
  }
  return ids;
}

const mentions = (v: any, ids: Set<string>) => v !== undefined && [...ids].some((id) => flatten(v).includes(`"${id}"`));

/**
 * Postgres roles: each service logs in as its own login role with the
 * password of its own secret (`treven/<env>/postgres/<service>`, a generated
 * password in the JSON shape RDS rotation expects, attached to the
 * instance); only the one-off migrate task gets the master secret (the
 * owner), together with each service's password to set; no task role or
 * other execution role may read the master secret, and a service's secret
 * is read only by that service's roles and the migrate task's execution role.
 */
export const postgresRoles: Check = (t) => {
  const master = secretIds(t, (n) => /\/postgres$/.test(n));
  expect_(master.size >= 1, 'no master Postgres secret');
  const own: Record<string, Set<string>> = {};
  for (const [service, login] of Object.entries(DB_LOGIN_ROLES)) {
    own[service] = secretIds(t, (n) => n.endsWith(`/postgres/${service}`));
    const [secret] = resources(t, 'AWS::SecretsManager::Secret').filter(([, p]) => String(p.Name).endsWith(`/postgres/${service}`));
    expect_(secret !== undefined, `no secret for the ${service} database user`);
    const generate = secret[1].GenerateSecretString ?? {};
    expect_(generate.GenerateStringKey === 'password' && String(generate.SecretStringTemplate ?? '').includes(`"username":"${login}"`),
      `the ${service} database user's secret must generate a password for ${login}`);
    const attached = resources(t, 'AWS::SecretsManager::SecretTargetAttachment')
      .some(([, p]) => refOf(p.SecretId) === secret[0] && p.TargetType === 'AWS::RDS::DBInstance');
    expect_(attached, `the ${service} database user's secret must be attached to the instance (host, port, engine, dbname)`);

    const task = taskEnvironments(t).find((x) => x.family === service) ?? fail(`no ${service} task`);
    const url = flatten(task.vars[`TREVEN_${service.toUpperCase()}_DATABASE_URL`]);
    expect_(url.includes(`postgres://${login}@`), `${service} must log in as ${login}`);
    const password = task.secrets.TREVEN_DATABASE_PASSWORD;
    expect_(mentions(password, own[service]) && !mentions(password, master), `${service} must get its own user's password, never the master's`);
  }
  for (const task of taskEnvironments(t)) {
    expect_(!mentions(task.secrets, master) && !mentions(task.vars, master), `${task.family} is given the master Postgres secret`);
    for (const [service, ids] of Object.entries(own)) {
      if (service !== task.family) expect_(!mentions(task.secrets, ids), `${task.family} is given ${service}'s database password`);
    }
  }

  const migrate = migrateEnvironment(t);
  const [[, migrateTd]] = resources(t, 'AWS::ECS::TaskDefinition').filter(([, p]) => isMigrateTask(p));
  expect_(JSON.stringify(migrateTd.ContainerDefinitions[0].Command) === JSON.stringify(['migrate', '--target', 'tenants,reports']),
    'the migrate task must run `migrate --target tenants,reports`');
  expect_(typeof migrate.vars.TREVEN_MIGRATE_DATABASE_USER === 'string', 'the migrate task must name the owner (TREVEN_MIGRATE_DATABASE_USER)');
  expect_(mentions(migrate.secrets.TREVEN_MIGRATE_DATABASE_PASSWORD, master), 'the migrate task must get the master password as TREVEN_MIGRATE_DATABASE_PASSWORD');
  for (const [service, ids] of Object.entries(own)) {
    const prefix = `TREVEN_${service.toUpperCase()}_DATABASE`;
    expect_(mentions(migrate.secrets[`${prefix}_PASSWORD`], ids), `the migrate task must get ${prefix}_PASSWORD from ${service}'s secret`);
    expect_(flatten(migrate.vars[`${prefix}_URL`]).includes(`postgres://${DB_LOGIN_ROLES[service]}@`), `the migrate task must name ${service}'s login role in ${prefix}_URL`);
  }
  const meshStray = Object.keys({ ...migrate.vars, ...migrate.secrets }).filter((n) => n.startsWith('TREVEN_MESH_'));
  expect_(meshStray.length === 0, `the migrate task needs no mesh credentials (${meshStray.join(', ')})`);

  // Who may read the master secret: the migrate task's execution role only.
  const migrateExecution = refOf(migrateTd.ExecutionRoleArn) ?? '';
  const readersOf = (ids: Set<string>) => roleDocuments(t)
    .filter(([, doc]) => (doc.Statement as any[]).some((st) =>
      asList(st.Action).some((a: any) => String(a).startsWith('secretsmanager:')) && mentions(st.Resource, ids)))
    .map(([role]) => role);
  const masterReaders = [...new Set(readersOf(master))];
  expect_(masterReaders.every((r) => r === migrateExecution) && masterReaders.includes(migrateExecution),
    `only the migrate task's execution role may read the master Postgres secret (readers: ${masterReaders.join(', ')})`);
  for (const [service, ids] of Object.entries(own)) {
    const [, td] = serviceTaskDefinitions(t).find(([, p]) => String(p.Family).endsWith(`-${service}`))!;
    const may = [refOf(td.TaskRoleArn), refOf(td.ExecutionRoleArn), migrateExecution];
    const readers = [...new Set(readersOf(ids))];
    expect_(readers.every((r) => may.includes(r)), `${service}'s database secret is readable by ${readers.filter((r) => !may.includes(r)).join(', ')}`);
  }
};

/**
 * Models: Bedrock primary, named; the Gemini secondary complete (project,
 * europe-west2, API key as a secret) or absent with no TREVEN_GEMINI_* at all.
 */
export const models: Check = (t) => {
  const agents = taskEnvironments(t).find((x) => x.family === 'agents') ?? fail('no agents task');
  expect_(agents.vars.TREVEN_MODEL_PRIMARY === 'bedrock', 'agents must name bedrock as TREVEN_MODEL_PRIMARY');
  const secondary = agents.vars.TREVEN_MODEL_SECONDARY;
  expect_(secondary === 'none' || secondary === 'gemini', `TREVEN_MODEL_SECONDARY must be none or gemini, is ${secondary}`);
  const gemini = (vars: Record<string, any>) => Object.keys(vars).filter((n) => n.startsWith('TREVEN_GEMINI_'));
  if (secondary === 'none') {
    for (const task of taskEnvironments(t)) {
      expect_([...gemini(task.vars), ...gemini(task.secrets)].length === 0, `${task.family} has TREVEN_GEMINI_* without a Gemini secondary`);
    }
  } else {
    expect_(typeof agents.vars.TREVEN_GEMINI_PROJECT === 'string', 'gemini needs TREVEN_GEMINI_PROJECT');
    expect_(agents.vars.TREVEN_GEMINI_LOCATION === 'europe-west2', 'Gemini must run in europe-west2 (London)');
    expect_(agents.secrets.TREVEN_GEMINI_API_KEY !== undefined && agents.vars.TREVEN_GEMINI_API_KEY === undefined,
      'the Gemini API key must be an ECS secret');
    for (const task of taskEnvironments(t).filter((x) => x.family !== 'agents')) {
      expect_([...gemini(task.vars), ...gemini(task.secrets)].length === 0, `${task.family} has TREVEN_GEMINI_*`);
    }
  }
  for (const vars of runtimeEnvironments(t)) {
    expect_(vars.TREVEN_MODEL_PRIMARY === 'bedrock' && vars.TREVEN_MODEL_SECONDARY === 'none', 'AgentCore: bedrock, no secondary');
    expect_(gemini(vars).length === 0, 'AgentCore has TREVEN_GEMINI_* in plain text');
  }
};

/**
 * Streamed chat: CloudFront sends `/api/conversations/*\/messages` (before
 * `/api/*`) to the public ALB, uncached, all methods, all viewer headers but
 * Host; the ALB forwards that path to gateway-api :8080 only with the origin header.
 */
export const streaming: Check = (t) => {
  const path = '/api/conversations/*/messages';
  const cfg = resources(t, 'AWS::CloudFront::Distribution')[0][1].DistributionConfig;
  const behaviours: any[] = cfg.CacheBehaviors ?? [];
  const i = behaviours.findIndex((b) => b.PathPattern === path);
  expect_(i >= 0, `no CloudFront behaviour for ${path}`);
  expect_(i < behaviours.findIndex((b) => b.PathPattern === '/api/*'), `${path} must come before /api/* (first match wins)`);
  const b = behaviours[i];
  const origin = (cfg.Origins as any[]).find((o) => o.Id === b.TargetOriginId);
  const ws = behaviours.find((x) => x.PathPattern === '/ws');
  expect_(origin && ws && b.TargetOriginId === ws.TargetOriginId, `${path} must go to the public ALB origin (as /ws)`);
  expect_(!flatten(origin.DomainName).includes('execute-api'), `${path} must not pass API Gateway (it buffers)`);
  expect_(b.CachePolicyId === '4135ea2d-6df8-44a3-9df3-4b5a84be39ad', `${path} must not be cached (CachingDisabled)`);
  expect_(b.OriginRequestPolicyId === 'b689b0a8-53d0-40ab-baf2-68738e2966ac', `${path} must forward all viewer headers except Host`);
  expect_(['GET', 'HEAD', 'OPTIONS', 'PUT', 'PATCH', 'POST', 'DELETE'].every((m) => asList(b.AllowedMethods).includes(m)), `${path} must allow every method`);
  expect_(b.ViewerProtocolPolicy === 'https-only' || b.ViewerProtocolPolicy === 'redirect-to-https', `${path} must be HTTPS`);

  // The ALB rule: that path, the origin header, forwarded to a gateway-api :8080 target group.
  const wsAlb = resources(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer').find(([, p]) => p.Scheme === 'internet-facing') ?? fail('no public ALB');
  const listeners = new Set(resources(t, 'AWS::ElasticLoadBalancingV2::Listener').filter(([, p]) => refOf(p.LoadBalancerArn) === wsAlb[0]).map(([id]) => id));
  const rules = resources(t, 'AWS::ElasticLoadBalancingV2::ListenerRule').filter(([, p]) => listeners.has(refOf(p.ListenerArn) ?? ''));
  const rule = rules.find(([, p]) => (p.Conditions ?? []).some((c: any) => c.Field === 'path-pattern' && asList(c.PathPatternConfig?.Values ?? c.Values).includes(path)));
  expect_(rule, `the public ALB has no rule for ${path}`);
  const conds: any[] = rule![1].Conditions;
  expect_(conds.some((c) => c.Field === 'http-header' && c.HttpHeaderConfig?.HttpHeaderName === 'X-Origin-Verify'),
    `the ALB rule for ${path} must require the X-Origin-Verify header`);
  const forward = (rule![1].Actions as any[]).find((a) => a.Type === 'forward') ?? fail(`the ALB rule for ${path} does not forward`);
  const tg = t.Resources[refOf(forward.TargetGroupArn) ?? ''];
  expect_(tg?.Type === 'AWS::ElasticLoadBalancingV2::TargetGroup' && tg.Properties.Port === 8080, `${path} must reach a target group on :8080`);
  const gatewayApi = resources(t, 'AWS::ECS::Service').find(([, p]) =>
    (p.LoadBalancers ?? []).some((lb: any) => refOf(lb.TargetGroupArn) === refOf(forward.TargetGroupArn)));
  expect_(gatewayApi && gatewayApi[1].LoadBalancers.every((lb: any) => lb.ContainerPort === 8080),
    `the ${path} target group must be gateway-api's (:8080)`);
};

/** All checks by name, in the order of AWS-ARCHITECTURE.md. */
export const CHECKS: Record<string, Check> = {
  region,
  cloudFront,
  cognito,
  apiGateway,
  ecs,
  s3,
  dynamodb,
  rds,
  redis,
  bedrock,
  networkIngress,
  privateSubnets,
  iamLeastPrivilege,
  secrets,
  meshSigningKeys,
  meshTls,
  postgresTls,
  postgresRoles,
  models,
  streaming,
};
