/**
 * The synthesised dev and prod templates against every line of
 * AWS-ARCHITECTURE.md "Service Configuration" and "Security" (test/checks.ts),
 * cdk-nag AwsSolutions (no unacknowledged finding), and the DynamoDB tables
 * against resources/dynamodb-tables.json.
 */
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { REGION } from '../lib/config';
import { readTableSpecs } from '../lib/data';
import { CHECKS, ecr, migrateEnvironment, resources, taskEnvironments } from './checks';
import { synth } from './synth';

describe.each(['dev', 'prod'] as const)('%s', (env) => {
  const s = () => synth(env);

  test('both stacks are pinned to eu-west-2 and the placeholder account', () => {
    expect(s().platform.region).toBe(REGION);
    expect(s().registry.region).toBe(REGION);
    expect(s().platform.account).toBe('123456789012');
    expect(s().platform.availabilityZones).toEqual(['eu-west-2a', 'eu-west-2b', 'eu-west-2c']);
  });

  test.each(Object.keys(CHECKS))('architecture: %s', (name) => {
    CHECKS[name](s().platformJson, { env });
  });

  test('architecture: ecr (registry stack)', () => {
    ecr(s().registryJson, { env });
  });

  test('cdk-nag AwsSolutions: no unacknowledged error or warning', () => {
    for (const stack of [s().platform, s().registry]) {
      const errors = Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
      const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'));
      expect([...errors, ...warnings].map((e) => `${e.id}: ${String(e.entry.data).slice(0, 120)}`)).toEqual([]);
    }
  });

  test('multi-AZ stores only in prod', () => {
    const t = s().platformTemplate;
    t.hasResourceProperties('AWS::RDS::DBInstance', { MultiAZ: env === 'prod' });
    t.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      ReplicasPerNodeGroup: env === 'prod' ? 1 : 0,
      AutomaticFailoverEnabled: env === 'prod',
    });
  });

  test('DynamoDB tables are exactly those of resources/dynamodb-tables.json', () => {
    const specs = readTableSpecs(env);
    const tables = resources(s().platformJson, 'AWS::DynamoDB::Table').map(([, p]) => p);
    expect(tables.map((t) => t.TableName).sort()).toEqual(specs.map((x) => x.tableName).sort());
    for (const spec of specs) {
      s().platformTemplate.hasResourceProperties('AWS::DynamoDB::Table', {
        TableName: spec.tableName,
        KeySchema: [
          { AttributeName: spec.partitionKey, KeyType: 'HASH' },
          { AttributeName: spec.sortKey, KeyType: 'RANGE' },
        ],
        GlobalSecondaryIndexes: (spec.globalSecondaryIndexes ?? []).map((g) =>
          Match.objectLike({ IndexName: g.indexName }),
        ),
        TimeToLiveSpecification: { AttributeName: spec.timeToLiveAttribute, Enabled: true },
      });
    }
  });

  test('each task role holds only its own grants', () => {
    const t = s().platformJson;
    const roleOf = (name: string) => {
      const td = resources(t, 'AWS::ECS::TaskDefinition').find(([, p]) => String(p.Family).endsWith(`-${name}`))!;
      return td[1].TaskRoleArn['Fn::GetAtt'][0] as string;
    };
    const statementsOf = (name: string) =>
      resources(t, 'AWS::IAM::Policy')
        .filter(([, p]) => p.Roles.some((r: { Ref: string }) => r.Ref === roleOf(name)))
        .flatMap(([, p]) => p.PolicyDocument.Statement as { Action: string | string[] }[])
        .flatMap((st) => (Array.isArray(st.Action) ? st.Action : [st.Action]));
    const services = (name: string) => [...new Set(statementsOf(name).map((a) => a.split(':')[0]))].sort();
    // `logs`: the metrics sidecar's EMF log events (test/observability.test.ts).
    expect(services('gateway-api')).toEqual(['logs', 'secretsmanager']);
    expect(services('gateway-ws')).toEqual(['logs', 'secretsmanager']);
    expect(services('tenants')).toEqual(['cognito-idp', 'logs', 'secretsmanager']);
    // Invitations: exactly these user-pool actions, on the platform's pool only.
    const cognitoStatements = resources(t, 'AWS::IAM::Policy')
      .filter(([, p]) => p.Roles.some((r: { Ref: string }) => r.Ref === roleOf('tenants')))
      .flatMap(([, p]) => p.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[])
      .filter((st) => [st.Action].flat().some((a) => a.startsWith('cognito-idp:')));
    expect(cognitoStatements).toHaveLength(1);
    expect([cognitoStatements[0].Action].flat().sort()).toEqual([
      'cognito-idp:AdminAddUserToGroup', 'cognito-idp:AdminCreateUser', 'cognito-idp:AdminDisableUser',
      'cognito-idp:AdminEnableUser', 'cognito-idp:AdminGetUser', 'cognito-idp:AdminRemoveUserFromGroup',
      'cognito-idp:AdminUpdateUserAttributes', 'cognito-idp:AdminUserGlobalSignOut',
    ]);
    const poolId = resources(t, 'AWS::Cognito::UserPool')[0][0];
    expect(cognitoStatements[0].Resource).toEqual({ 'Fn::GetAtt': [poolId, 'Arn'] });
    const tenantsTask = taskEnvironments(t).find((x) => x.family === 'tenants')!;
    expect(tenantsTask.vars.TREVEN_COGNITO_USER_POOL_ID).toEqual({ Ref: poolId });
    expect(services('reports')).toEqual(['logs', 'secretsmanager']);
    expect(services('documents')).toEqual(['dynamodb', 'logs', 's3', 'secretsmanager']);
    expect(services('agents')).toEqual(['bedrock', 'dynamodb', 'logs', 'secretsmanager']);
    expect(statementsOf('agents')).toEqual(expect.arrayContaining(['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream']));
  });

  test('the migrate task: the owner and each service\'s login role and password, nothing else', () => {
    const t = s().platformJson;
    const migrate = migrateEnvironment(t);
    expect(Object.keys(migrate.vars).sort()).toEqual([
      'TREVEN_MIGRATE_DATABASE_USER',
      'TREVEN_REPORTS_DATABASE_URL',
      'TREVEN_TENANTS_DATABASE_URL',
      'TREVEN_TLS_CA_FILE',
    ]);
    expect(migrate.vars.TREVEN_MIGRATE_DATABASE_USER).toBe('treven');
    expect(Object.keys(migrate.secrets).sort()).toEqual([
      'TREVEN_MIGRATE_DATABASE_PASSWORD',
      'TREVEN_REPORTS_DATABASE_PASSWORD',
      'TREVEN_TENANTS_DATABASE_PASSWORD',
    ]);
    const names = resources(t, 'AWS::SecretsManager::Secret').map(([, p]) => String(p.Name)).filter((n) => n.includes('/postgres'));
    expect(names.sort()).toEqual([`treven/${env}/postgres`, `treven/${env}/postgres/reports`, `treven/${env}/postgres/tenants`]);
  });

  test('service environment: the variables the binary reads', () => {
    const t = s().platformJson;
    const envOf = (name: string) => {
      const task = taskEnvironments(t).find((x) => x.family === name)!;
      return { vars: task.vars, secrets: Object.keys(task.secrets).sort() };
    };
    for (const name of ['gateway-api', 'gateway-ws', 'tenants', 'documents', 'reports', 'agents']) {
      const { vars, secrets } = envOf(name);
      expect(vars).toMatchObject({ TREVEN_ENV: env, TREVEN_LOG_FORMAT: 'json', AWS_REGION: 'eu-west-2' });
      expect(vars.TREVEN_MESH_SIGNING_KEY_SECRET_ID).toBeDefined();
      expect(vars.TREVEN_MESH_PUBLIC_KEYS).toBeDefined();
      expect(Object.keys(vars).filter((n) => n.startsWith('TREVEN_MESH_KEY'))).toEqual([]);
      expect(secrets).toContain('TREVEN_MESH_CA_SEED');
      expect(vars.TREVEN_MESH_CA_SEED).toBeUndefined();
    }
    expect(envOf('gateway-api').vars).toMatchObject({
      TREVEN_GATEWAY_ADDR: '0.0.0.0:8080',
      // Routes follow the services' reflection (docs/gateway.md).
      TREVEN_GATEWAY_REFLECTION: 'true',
      TREVEN_TENANTS_URL: 'https://tenants.treven.internal:50051',
      TREVEN_DOCUMENTS_URL: 'https://documents.treven.internal:50052',
      TREVEN_REPORTS_URL: 'https://reports.treven.internal:50053',
      TREVEN_AGENTS_URL: 'https://agents.treven.internal:50054',
    });
    expect(envOf('gateway-api').vars.TREVEN_COGNITO_ISSUER).toBeDefined();
    expect(envOf('gateway-api').vars.TREVEN_COGNITO_CLIENT_ID).toBeDefined();
    expect(envOf('gateway-api').secrets).toEqual(['TREVEN_MESH_CA_SEED', 'TREVEN_REDIS_URL']);
    expect(envOf('gateway-api').vars.TREVEN_MESH_TLS_NAMES).toBeUndefined();
    expect(envOf('tenants').vars).toMatchObject({
      TREVEN_TENANTS_ADDR: '0.0.0.0:50051',
      TREVEN_MESH_TLS_NAMES: 'tenants.treven.internal',
      TREVEN_TLS_CA_FILE: '/etc/treven/rds-ca-bundle.pem',
    });
    expect(JSON.stringify(envOf('tenants').vars.TREVEN_TENANTS_DATABASE_URL)).toContain('postgres://treven_tenants_svc@');
    expect(JSON.stringify(envOf('tenants').vars.TREVEN_TENANTS_DATABASE_URL)).toMatch(/\/treven\?sslmode=verify-full"\]\]\}$/);
    expect(envOf('tenants').secrets).toEqual(['TREVEN_DATABASE_PASSWORD', 'TREVEN_MESH_CA_SEED']);
    expect(envOf('reports').secrets).toEqual(['TREVEN_DATABASE_PASSWORD', 'TREVEN_MESH_CA_SEED', 'TREVEN_REDIS_URL']);
    expect(envOf('reports').vars.TREVEN_TLS_CA_FILE).toBe('/etc/treven/rds-ca-bundle.pem');
    expect(envOf('documents').vars.TREVEN_DATA_BUCKET).toBeDefined();
    expect(envOf('documents').vars.TREVEN_DOCUMENTS_TABLE).toBeDefined();
    expect(envOf('documents').vars.TREVEN_TLS_CA_FILE).toBeUndefined();
    expect(envOf('documents').secrets).toEqual(['TREVEN_MESH_CA_SEED']);
    expect(envOf('agents').vars).toMatchObject({
      TREVEN_BEDROCK_MODEL_ID: 'eu.anthropic.claude-opus-4-5-20251101-v1:0',
      TREVEN_MODEL_PRIMARY: 'bedrock',
      TREVEN_MODEL_SECONDARY: 'none',
      TREVEN_MESH_TLS_NAMES: 'agents.treven.internal',
    });
    expect(envOf('agents').vars.TREVEN_AGENTS_TABLE).toBeDefined();
    expect(envOf('agents').secrets).toEqual(['TREVEN_MESH_CA_SEED', 'TREVEN_REDIS_URL']);
  });
});
