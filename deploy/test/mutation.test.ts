/**
 * Mutation proof: each check of test/checks.ts is run on a copy of the
 * synthesised template broken in one way, and must fail. This is how we know
 * the suite catches, e.g., a bucket losing versioning, Redis losing TLS, the
 * region changing, or a security group opening a service port to the world.
 */
import { CHECKS, CheckFailed, ecr, refOf, resources, signingKeySecrets } from './checks';
import { synth, TemplateJson } from './synth';

type Mutation = { check: keyof typeof CHECKS; env: 'dev' | 'prod'; mutate: (t: TemplateJson) => void };

const only = (t: TemplateJson, type: string, pick?: (p: any) => boolean) => {
  const found = resources(t, type).filter(([, p]) => (pick ? pick(p) : true));
  if (found.length === 0) throw new Error(`mutation target ${type} not found`);
  return found[0][1];
};
const dataBucket = (env: string) => (t: TemplateJson) => only(t, 'AWS::S3::Bucket', (p) => p.BucketName === `treven-data-${env}`);
const sgId = (t: TemplateJson, description: string) =>
  resources(t, 'AWS::EC2::SecurityGroup').find(([, p]) => p.GroupDescription === description)![0];

const MUTATIONS: Record<string, Mutation> = {
  'the data bucket loses versioning': { check: 's3', env: 'dev', mutate: (t) => delete dataBucket('dev')(t).VersioningConfiguration },
  'the data bucket switches to SSE-KMS': {
    check: 's3', env: 'dev',
    mutate: (t) => (dataBucket('dev')(t).BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm = 'aws:kms'),
  },
  'the data bucket allows public policies': {
    check: 's3', env: 'prod', mutate: (t) => (dataBucket('prod')(t).PublicAccessBlockConfiguration.BlockPublicPolicy = false),
  },
  'the TLS-only bucket policy is dropped': {
    check: 's3', env: 'dev',
    mutate: (t) => {
      for (const [, p] of resources(t, 'AWS::S3::BucketPolicy')) {
        p.PolicyDocument.Statement = p.PolicyDocument.Statement.filter((s: any) => s.Effect !== 'Deny');
      }
    },
  },
  'Redis loses TLS': {
    check: 'redis', env: 'prod', mutate: (t) => (only(t, 'AWS::ElastiCache::ReplicationGroup').TransitEncryptionEnabled = false),
  },
  'Redis turns cluster mode on': {
    check: 'redis', env: 'dev', mutate: (t) => (only(t, 'AWS::ElastiCache::ReplicationGroup').NumNodeGroups = 3),
  },
  'the region changes': {
    check: 'region', env: 'dev',
    mutate: (t) => resources(t, 'AWS::EC2::Subnet').forEach(([, p]) => (p.AvailabilityZone = String(p.AvailabilityZone).replace('eu-west-2', 'eu-west-1'))),
  },
  'a security group opens a service port to the world': {
    check: 'networkIngress', env: 'prod',
    mutate: (t) => {
      t.Resources.OpenTenants = {
        Type: 'AWS::EC2::SecurityGroupIngress',
        Properties: { GroupId: { 'Fn::GetAtt': [sgId(t, 'ECS service tenants'), 'GroupId'] }, IpProtocol: 'tcp', FromPort: 50051, ToPort: 50051, CidrIp: '0.0.0.0/0' },
      };
    },
  },
  'Postgres opened to a VPC range': {
    check: 'networkIngress', env: 'dev',
    mutate: (t) => {
      const sg = t.Resources[sgId(t, 'RDS PostgreSQL: from tenants and reports only')];
      sg.Properties.SecurityGroupIngress = [{ IpProtocol: 'tcp', FromPort: 5432, ToPort: 5432, CidrIp: '10.40.0.0/16' }];
    },
  },
  'the WebSocket ALB opened to the world on all ports': {
    check: 'networkIngress', env: 'dev',
    mutate: (t) => {
      const sg = t.Resources[sgId(t, 'Public WebSocket ALB: from CloudFront origin-facing addresses only')];
      sg.Properties.SecurityGroupIngress = [{ IpProtocol: '-1', CidrIp: '0.0.0.0/0' }];
    },
  },
  'PITR is switched off': {
    check: 'dynamodb', env: 'prod', mutate: (t) => (only(t, 'AWS::DynamoDB::Table').PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled = false),
  },
  'a table moves to provisioned capacity': {
    check: 'dynamodb', env: 'dev', mutate: (t) => (only(t, 'AWS::DynamoDB::Table').BillingMode = 'PROVISIONED'),
  },
  'prod RDS loses Multi-AZ': { check: 'rds', env: 'prod', mutate: (t) => (only(t, 'AWS::RDS::DBInstance').MultiAZ = false) },
  'dev RDS becomes Multi-AZ': { check: 'rds', env: 'dev', mutate: (t) => (only(t, 'AWS::RDS::DBInstance').MultiAZ = true) },
  'RDS storage unencrypted': { check: 'rds', env: 'prod', mutate: (t) => (only(t, 'AWS::RDS::DBInstance').StorageEncrypted = false) },
  'RDS backups off': { check: 'rds', env: 'dev', mutate: (t) => (only(t, 'AWS::RDS::DBInstance').BackupRetentionPeriod = 0) },
  'orgId becomes mutable': {
    check: 'cognito', env: 'dev',
    mutate: (t) => (only(t, 'AWS::Cognito::UserPool').Schema.find((a: any) => a.Name === 'orgId').Mutable = true),
  },
  'the app client gets the implicit grant': {
    check: 'cognito', env: 'prod', mutate: (t) => (only(t, 'AWS::Cognito::UserPoolClient').AllowedOAuthFlows = ['code', 'implicit']),
  },
  'a route loses the JWT authorizer': {
    check: 'apiGateway', env: 'dev',
    mutate: (t) => {
      const r = only(t, 'AWS::ApiGatewayV2::Route', (p) => p.RouteKey === 'ANY /{proxy+}');
      r.AuthorizationType = 'NONE';
      delete r.AuthorizerId;
    },
  },
  'API throttling removed': {
    check: 'apiGateway', env: 'prod', mutate: (t) => delete only(t, 'AWS::ApiGatewayV2::Stage').DefaultRouteSettings,
  },
  'the circuit breaker is switched off': {
    check: 'ecs', env: 'prod',
    mutate: (t) => (only(t, 'AWS::ECS::Service').DeploymentConfiguration.DeploymentCircuitBreaker = { Enable: false, Rollback: false }),
  },
  'memory autoscaling removed': {
    check: 'ecs', env: 'dev',
    mutate: (t) => {
      const [id] = resources(t, 'AWS::ApplicationAutoScaling::ScalingPolicy').find(
        ([, p]) => p.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType === 'ECSServiceAverageMemoryUtilization',
      )!;
      delete t.Resources[id];
    },
  },
  'the WebSocket idle timeout drops to the default': {
    check: 'ecs', env: 'dev',
    mutate: (t) => {
      const lb = only(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', (p) => p.Scheme === 'internet-facing');
      lb.LoadBalancerAttributes = lb.LoadBalancerAttributes.filter((a: any) => a.Key !== 'idle_timeout.timeout_seconds');
    },
  },
  'a task role gets dynamodb:* on every table': {
    check: 'iamLeastPrivilege', env: 'prod',
    mutate: (t) => only(t, 'AWS::IAM::Policy').PolicyDocument.Statement.push({ Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: '*' }),
  },
  'a task role gets s3:*': {
    check: 'iamLeastPrivilege', env: 'dev',
    mutate: (t) => only(t, 'AWS::IAM::Policy').PolicyDocument.Statement.push({ Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::x' }),
  },
  'a password in plain environment': {
    check: 'secrets', env: 'dev',
    mutate: (t) => only(t, 'AWS::ECS::TaskDefinition').ContainerDefinitions[0].Environment.push({ Name: 'TREVEN_DATABASE_PASSWORD', Value: 'hunter2' }),
  },
  'a task placed in a public subnet': {
    check: 'privateSubnets', env: 'dev',
    mutate: (t) => {
      const [pub] = resources(t, 'AWS::EC2::Subnet').find(([, p]) => p.Tags.some((x: any) => x.Value === 'Public'))!;
      only(t, 'AWS::ECS::Service').NetworkConfiguration.AwsvpcConfiguration.Subnets = [{ Ref: pub }];
    },
  },
  'CloudFront serves /api over plain HTTP': {
    check: 'cloudFront', env: 'prod',
    mutate: (t) => {
      const cfg = only(t, 'AWS::CloudFront::Distribution').DistributionConfig;
      cfg.CacheBehaviors.find((b: any) => b.PathPattern === '/api/*').ViewerProtocolPolicy = 'allow-all';
    },
  },
  'the Bedrock grant is dropped': {
    check: 'bedrock', env: 'dev',
    mutate: (t) =>
      resources(t, 'AWS::IAM::Policy').forEach(([, p]) => {
        p.PolicyDocument.Statement = p.PolicyDocument.Statement.filter((s: any) => !JSON.stringify(s.Action).includes('bedrock:'));
      }),
  },
  'a gRPC upstream URL goes back to plain http': {
    check: 'meshTls', env: 'prod',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-reports')).ContainerDefinitions[0];
      c.Environment.find((e: any) => e.Name === 'TREVEN_TENANTS_URL').Value = 'http://tenants.treven.internal:50051';
    },
  },
  'the mesh CA seed moves into plain environment': {
    check: 'meshTls', env: 'dev',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-documents')).ContainerDefinitions[0];
      c.Secrets = c.Secrets.filter((x: any) => x.Name !== 'TREVEN_MESH_CA_SEED');
      c.Environment.push({ Name: 'TREVEN_MESH_CA_SEED', Value: 'seed' });
    },
  },
  'a task loses the mesh CA seed': {
    check: 'meshTls', env: 'prod',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-gateway-ws')).ContainerDefinitions[0];
      c.Secrets = c.Secrets.filter((x: any) => x.Name !== 'TREVEN_MESH_CA_SEED');
    },
  },
  'a Postgres URL loses sslmode=verify-full': {
    check: 'postgresTls', env: 'prod',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-tenants')).ContainerDefinitions[0];
      const url = c.Environment.find((e: any) => e.Name === 'TREVEN_TENANTS_DATABASE_URL').Value['Fn::Join'][1];
      url[url.length - 1] = String(url[url.length - 1]).replace('?sslmode=verify-full', '?sslmode=require');
    },
  },
  'a Gemini variable without a Gemini secondary': {
    check: 'models', env: 'prod',
    mutate: (t) =>
      only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-agents'))
        .ContainerDefinitions[0].Environment.push({ Name: 'TREVEN_GEMINI_PROJECT', Value: 'p' }),
  },
  'the streamed chat path goes back through API Gateway': {
    check: 'streaming', env: 'dev',
    mutate: (t) => {
      const cfg = only(t, 'AWS::CloudFront::Distribution').DistributionConfig;
      cfg.CacheBehaviors = cfg.CacheBehaviors.filter((b: any) => b.PathPattern !== '/api/conversations/*/messages');
    },
  },
  'the reports task signs with the tenants key': {
    check: 'meshSigningKeys', env: 'prod',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-reports')).ContainerDefinitions[0];
      c.Environment.find((e: any) => e.Name === 'TREVEN_MESH_SIGNING_KEY_SECRET_ID').Value = { Ref: signingKeySecrets(t).tenants };
    },
  },
  'the gateway task role may read the tenants key': {
    check: 'meshSigningKeys', env: 'dev',
    mutate: (t) => {
      const td = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-gateway-api'));
      const role = refOf(td.TaskRoleArn);
      only(t, 'AWS::IAM::Policy', (p) => p.Roles.some((r: any) => r.Ref === role)).PolicyDocument.Statement.push({
        Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: signingKeySecrets(t).tenants },
      });
    },
  },
  'an execution role may read the operator key': {
    check: 'meshSigningKeys', env: 'prod',
    mutate: (t) => {
      const td = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-agents'));
      const role = refOf(td.ExecutionRoleArn);
      only(t, 'AWS::IAM::Policy', (p) => p.Roles.some((r: any) => r.Ref === role)).PolicyDocument.Statement.push({
        Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: signingKeySecrets(t).operator },
      });
    },
  },
  'a task gets its signing key as an ECS secret': {
    check: 'meshSigningKeys', env: 'dev',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-documents')).ContainerDefinitions[0];
      c.Secrets.push({ Name: 'TREVEN_MESH_SIGNING_KEYS', ValueFrom: { Ref: signingKeySecrets(t).documents } });
    },
  },
  'a task loses the public keys': {
    check: 'meshSigningKeys', env: 'prod',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-tenants')).ContainerDefinitions[0];
      c.Environment = c.Environment.filter((e: any) => e.Name !== 'TREVEN_MESH_PUBLIC_KEYS');
    },
  },
  'a signing key gets a CloudFormation-generated value': {
    check: 'meshSigningKeys', env: 'dev',
    mutate: (t) => (t.Resources[signingKeySecrets(t).agents].Properties.GenerateSecretString = { PasswordLength: 44 }),
  },
  'the key Lambda may also write the Postgres secret': {
    check: 'meshSigningKeys', env: 'prod',
    mutate: (t) => {
      const [postgres] = resources(t, 'AWS::SecretsManager::Secret').find(([, p]) => String(p.Name).endsWith('/postgres'))!;
      const cr = only(t, 'Custom::TrevenMeshKeys');
      const role = t.Resources[refOf(cr.ServiceToken)!].Properties.Role;
      t.Resources[refOf(role)!].Properties.Policies[0].PolicyDocument.Statement[0].Resource.push({ Ref: postgres });
    },
  },
  'a service logs in with the master password': {
    check: 'postgresRoles', env: 'prod',
    mutate: (t) => {
      const [master] = resources(t, 'AWS::SecretsManager::SecretTargetAttachment').find(([, p]) =>
        String(t.Resources[refOf(p.SecretId)!].Properties.Name).endsWith('/postgres'))!;
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-tenants')).ContainerDefinitions[0];
      c.Secrets.find((e: any) => e.Name === 'TREVEN_DATABASE_PASSWORD').ValueFrom = { 'Fn::Join': ['', [{ Ref: master }, ':password::']] };
    },
  },
  'reports logs in as the owner': {
    check: 'postgresRoles', env: 'dev',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-reports')).ContainerDefinitions[0];
      const url = c.Environment.find((e: any) => e.Name === 'TREVEN_REPORTS_DATABASE_URL');
      url.Value = JSON.parse(JSON.stringify(url.Value).replace('treven_reports_svc', 'treven'));
    },
  },
  'the tenants task role may read the master secret': {
    check: 'postgresRoles', env: 'prod',
    mutate: (t) => {
      const [master] = resources(t, 'AWS::SecretsManager::SecretTargetAttachment').find(([, p]) =>
        String(t.Resources[refOf(p.SecretId)!].Properties.Name).endsWith('/postgres'))!;
      const td = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-tenants'));
      const [, policy] = resources(t, 'AWS::IAM::Policy').find(([, p]) => p.Roles.some((r: any) => r.Ref === refOf(td.TaskRoleArn)))!;
      policy.PolicyDocument.Statement.push({ Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: master } });
    },
  },
  'the migrate task loses the reports password': {
    check: 'postgresRoles', env: 'dev',
    mutate: (t) => {
      const c = only(t, 'AWS::ECS::TaskDefinition', (p) => String(p.Family).endsWith('-migrate')).ContainerDefinitions[0];
      c.Secrets = c.Secrets.filter((e: any) => e.Name !== 'TREVEN_REPORTS_DATABASE_PASSWORD');
    },
  },
  'the ALB streaming rule stops requiring the origin header': {
    check: 'streaming', env: 'prod',
    mutate: (t) => {
      const rule = only(t, 'AWS::ElasticLoadBalancingV2::ListenerRule', (p) =>
        p.Conditions.some((c: any) => c.Field === 'path-pattern'));
      rule.Conditions = rule.Conditions.filter((c: any) => c.Field !== 'http-header');
    },
  },
};

describe('every check catches its mutation', () => {
  test.each(Object.keys(MUTATIONS))('%s', (name) => {
    const m = MUTATIONS[name];
    const original = synth(m.env).platformJson;
    // The unmutated template passes...
    expect(() => CHECKS[m.check](original, { env: m.env })).not.toThrow();
    // ...and the mutated copy fails that check.
    const broken = JSON.parse(JSON.stringify(original)) as TemplateJson;
    m.mutate(broken);
    expect(() => CHECKS[m.check](broken, { env: m.env })).toThrow(CheckFailed);
  });

  test('ECR without lifecycle rules fails', () => {
    const broken = JSON.parse(JSON.stringify(synth('dev').registryJson)) as TemplateJson;
    only(broken, 'AWS::ECR::Repository').LifecyclePolicy = undefined;
    expect(() => ecr(broken, { env: 'dev' })).toThrow(CheckFailed);
  });
});
