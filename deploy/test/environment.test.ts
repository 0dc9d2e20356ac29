/**
 * What each task is given, against what each role of the binary reads
 * (issue #12: `treven serve --target <role> --check-config` with a task
 * definition's Environment + Secrets must pass: nothing required missing,
 * no TREVEN_* variable the role does not read). READS mirrors the Rust
 * configuration (services/<crate>/src/config.rs, gateway/src/config.rs,
 * crates/mesh/src/{config,keys,telemetry,server}.rs) plus the TLS
 * variables of the issue; change it together with the Rust side.
 *
 * Also: the Gemini secondary with and without `-c geminiProject`, the mesh
 * CA rotation setting, the AgentCore runtime's environment and network, and
 * the per-principal mesh signing keys (secrets, custom resource, who reads what).
 */
import * as fs from 'fs';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { buildApp } from '../lib/app';
import { CALLS, ServiceName } from '../lib/config';
import {
  CHECKS,
  MESH_PRINCIPALS,
  meshKeysResource,
  models,
  principalOfFamily,
  resources,
  serviceTaskDefinitions,
  signingKeyReaders,
  signingKeySecrets,
  taskEnvironments,
} from './checks';
import { synth } from './synth';

/**
 * Read by every role (`treven serve`): environment, telemetry, shutdown, mesh
 * signing keys (TREVEN_MESH_SIGNING_KEYS is the inline form for local runs
 * only; in AWS the task's own principal's secret by id and every public key),
 * mesh TLS, extra roots.
 */
const COMMON = [
  'TREVEN_ENV',
  'TREVEN_LOG',
  'TREVEN_LOG_FORMAT',
  'TREVEN_DRAIN_DELAY_SECS',
  'TREVEN_SHUTDOWN_GRACE_SECS',
  'TREVEN_MESH_SIGNING_KEYS',
  'TREVEN_MESH_SIGNING_KEY_SECRET_ID',
  'TREVEN_MESH_PUBLIC_KEYS',
  'TREVEN_MESH_CA_SEED',
  'TREVEN_MESH_CA_SEED_PREVIOUS',
  'TREVEN_MESH_CA_SEED_SECRET_ID',
  'TREVEN_TLS_CA_FILE',
];
/** gRPC servers: the names of their leaf certificate; the admin port (/metrics, /healthz). */
const GRPC_SERVER = ['TREVEN_MESH_TLS_NAMES', 'TREVEN_ADMIN_ADDR'];

const READS: Record<string, readonly string[]> = {
  gateway: [
    ...COMMON,
    'TREVEN_GATEWAY_ADDR', 'TREVEN_GATEWAY_WS_ADDR', 'TREVEN_COGNITO_ISSUER', 'TREVEN_COGNITO_CLIENT_ID',
    'TREVEN_COGNITO_JWKS_URL', 'TREVEN_JWKS_MIN_REFRESH_SECS', 'TREVEN_ROLE_CACHE_SECS', 'TREVEN_TENANTS_URL',
    'TREVEN_DOCUMENTS_URL', 'TREVEN_REPORTS_URL', 'TREVEN_AGENTS_URL', 'TREVEN_REDIS_URL',
    'TREVEN_RATE_LIMIT_PER_MINUTE', 'TREVEN_ORG_RATE_LIMIT_PER_MINUTE', 'TREVEN_CORS_ORIGINS',
    'TREVEN_GATEWAY_REFLECTION', 'TREVEN_GATEWAY_REFLECTION_REFRESH_SECS', 'TREVEN_MAX_BODY_BYTES', 'TREVEN_UPSTREAM_TIMEOUT_SECS',
    'TREVEN_MAX_STREAMS_PER_CONNECTION', 'TREVEN_WS_PING_SECS', 'TREVEN_WS_IDLE_TIMEOUT_SECS',
    'TREVEN_WS_QUEUE_EVENTS', 'TREVEN_WS_MAX_MESSAGE_BYTES', 'TREVEN_WS_MAX_SUBSCRIPTIONS',
    'TREVEN_WS_MAX_CONNECTIONS', 'TREVEN_WS_REPLAY_MAX', 'TREVEN_WS_SEND_TIMEOUT_SECS',
    'TREVEN_GATEWAY_WS_RECHECK_SECS',
  ],
  tenants: [
    ...COMMON, ...GRPC_SERVER,
    'TREVEN_TENANTS_ADDR', 'TREVEN_TENANTS_DATABASE_URL', 'TREVEN_DATABASE_PASSWORD',
    'TREVEN_TENANTS_DB_MAX_CONNECTIONS', 'TREVEN_DB_ACQUIRE_TIMEOUT_SECS',
    'TREVEN_COGNITO_USER_POOL_ID', 'TREVEN_COGNITO_SYNC_MAX_BACKOFF_MILLIS',
  ],
  documents: [
    ...COMMON, ...GRPC_SERVER,
    'TREVEN_DOCUMENTS_ADDR', 'TREVEN_DATA_BUCKET', 'TREVEN_DOCUMENTS_TABLE',
    'TREVEN_ARTIFACT_MAX_BYTES', 'TREVEN_UPLOAD_URL_TTL_SECS',
    'TREVEN_DOWNLOAD_URL_TTL_SECS', 'TREVEN_VERIFY_UPLOAD_BYTES', 'TREVEN_S3_FORCE_PATH_STYLE',
    'TREVEN_TENANTS_URL',
  ],
  reports: [
    ...COMMON, ...GRPC_SERVER,
    'TREVEN_REPORTS_ADDR', 'TREVEN_REPORTS_DATABASE_URL', 'TREVEN_DATABASE_PASSWORD',
    'TREVEN_REPORTS_DB_MAX_CONNECTIONS', 'TREVEN_DB_ACQUIRE_TIMEOUT_SECS', 'TREVEN_TENANTS_URL',
    'TREVEN_DOCUMENTS_URL', 'TREVEN_AGENTS_URL', 'TREVEN_REDIS_URL', 'TREVEN_REPORTS_CALL_TIMEOUT_SECS',
    'TREVEN_REPORTS_WORKERS', 'TREVEN_REPORTS_POLL_MILLIS', 'TREVEN_REPORTS_MAX_ATTEMPTS',
    'TREVEN_REPORTS_GENERATION_TIMEOUT_SECS', 'TREVEN_REPORTS_MAX_FIELD_CHARS', 'TREVEN_REPORTS_MAX_ITEMS',
    'TREVEN_REPORTS_MAX_DOCUMENTS', 'TREVEN_REPORTS_HEARTBEAT_MILLIS', 'TREVEN_REPORTS_LEASE_MILLIS',
    'TREVEN_REPORTS_BACKOFF_MILLIS', 'TREVEN_REPORTS_BACKOFF_MAX_MILLIS',
  ],
  agents: [
    ...COMMON, ...GRPC_SERVER,
    'TREVEN_AGENTS_ADDR', 'TREVEN_AGENT_RUNTIME_ADDR', 'TREVEN_AGENTS_TABLE', 'TREVEN_MODEL_PRIMARY',
    'TREVEN_MODEL_SECONDARY', 'TREVEN_BEDROCK_MODEL_ID', 'TREVEN_BEDROCK_REGION', 'TREVEN_BEDROCK_ENDPOINT',
    'TREVEN_BEDROCK_MAX_ATTEMPTS', 'TREVEN_GUARDRAIL_ID', 'TREVEN_GUARDRAIL_VERSION', 'TREVEN_GEMINI_PROJECT',
    'TREVEN_GEMINI_LOCATION', 'TREVEN_GEMINI_ENDPOINT', 'TREVEN_GEMINI_MODEL', 'TREVEN_GEMINI_API_KEY',
    'TREVEN_GEMINI_ACCESS_TOKEN', 'TREVEN_BREAKER_FAILURES', 'TREVEN_BREAKER_COOLDOWN_SECS',
    'TREVEN_MODEL_RETRIES', 'TREVEN_MODEL_RETRY_BASE_MS', 'TREVEN_MAX_MESSAGE_CHARS', 'TREVEN_MAX_PROMPT_CHARS',
    'TREVEN_MAX_STREAM_SECS', 'TREVEN_MAX_TOOL_TURNS', 'TREVEN_MAX_OUTPUT_TOKENS', 'TREVEN_OFFLINE_LATENCY_MS',
    'TREVEN_TENANTS_URL', 'TREVEN_DOCUMENTS_URL', 'TREVEN_REPORTS_URL', 'TREVEN_REDIS_URL',
  ],
};

/** What the CDK app must give each role in AWS (dev/prod): no loopback defaults there. */
const MUST_SET: Record<ServiceName, readonly string[]> = {
  'gateway-api': ['TREVEN_GATEWAY_ADDR', 'TREVEN_COGNITO_ISSUER', 'TREVEN_COGNITO_CLIENT_ID', 'TREVEN_REDIS_URL'],
  'gateway-ws': ['TREVEN_GATEWAY_WS_ADDR', 'TREVEN_COGNITO_ISSUER', 'TREVEN_COGNITO_CLIENT_ID', 'TREVEN_REDIS_URL'],
  tenants: ['TREVEN_TENANTS_ADDR', 'TREVEN_TENANTS_DATABASE_URL', 'TREVEN_DATABASE_PASSWORD', 'TREVEN_TLS_CA_FILE', 'TREVEN_COGNITO_USER_POOL_ID'],
  documents: ['TREVEN_DOCUMENTS_ADDR', 'TREVEN_DATA_BUCKET', 'TREVEN_DOCUMENTS_TABLE'],
  reports: ['TREVEN_REPORTS_ADDR', 'TREVEN_REPORTS_DATABASE_URL', 'TREVEN_DATABASE_PASSWORD', 'TREVEN_TLS_CA_FILE', 'TREVEN_REDIS_URL'],
  agents: ['TREVEN_AGENTS_ADDR', 'TREVEN_AGENTS_TABLE', 'TREVEN_MODEL_PRIMARY', 'TREVEN_MODEL_SECONDARY', 'TREVEN_REDIS_URL'],
};
const roleOf = (family: string) => (family.startsWith('gateway') ? 'gateway' : family);
const urlVar = (callee: string) => `TREVEN_${callee.toUpperCase()}_URL`;

const VARIANTS: [string, string, Record<string, string>][] = [
  ['dev', 'dev', {}],
  ['prod', 'prod', {}],
  ['prod with Gemini', 'prod', { geminiProject: 'treven-prod-ai' }],
  ['prod during a mesh CA rotation', 'prod', { meshCaAlsoTrust: 'AWSPENDING' }],
  ['prod during a mesh key rotation', 'prod', { meshKeyGeneration: '2', meshKeyPublishOnly: 'true' }],
];

describe.each(VARIANTS)('%s: every task gets exactly what its role reads', (_label, env, extra) => {
  const tasks = () => taskEnvironments(synth(env, extra).platformJson);

  test('no TREVEN_* variable the role does not read', () => {
    for (const task of tasks()) {
      const given = [...Object.keys(task.vars), ...Object.keys(task.secrets)].filter((n) => n.startsWith('TREVEN_'));
      const unread = given.filter((n) => !READS[roleOf(task.family)].includes(n));
      expect({ task: task.family, unread }).toEqual({ task: task.family, unread: [] });
      // A variable is either plain or a secret, never both.
      expect(Object.keys(task.vars).filter((n) => n in task.secrets)).toEqual([]);
    }
  });

  test('everything the role needs in AWS, and the URLs of exactly the services it calls', () => {
    for (const task of tasks()) {
      const name = task.family as ServiceName;
      const given = new Set([...Object.keys(task.vars), ...Object.keys(task.secrets)]);
      const must = [
        'TREVEN_ENV', 'TREVEN_LOG_FORMAT', 'TREVEN_MESH_SIGNING_KEY_SECRET_ID', 'TREVEN_MESH_PUBLIC_KEYS', 'TREVEN_MESH_CA_SEED',
        ...MUST_SET[name],
        ...CALLS[name].map(urlVar),
        ...(task.port >= 50051 ? ['TREVEN_MESH_TLS_NAMES'] : []),
      ];
      expect({ task: name, missing: must.filter((n) => !given.has(n)) }).toEqual({ task: name, missing: [] });
      const urls = Object.keys(task.vars).filter((n) => /^TREVEN_(TENANTS|DOCUMENTS|REPORTS|AGENTS)_URL$/.test(n)).sort();
      expect(urls).toEqual(CALLS[name].map(urlVar).sort());
    }
  });

  test.each(['meshTls', 'meshSigningKeys', 'postgresTls', 'models', 'streaming', 'secrets', 'networkIngress', 'iamLeastPrivilege'])('check %s', (check) => {
    CHECKS[check](synth(env, extra).platformJson, { env: env as 'dev' | 'prod' });
  });
});

describe('the Gemini secondary (-c geminiProject)', () => {
  test('absent: TREVEN_MODEL_SECONDARY=none, no TREVEN_GEMINI_* anywhere, no Gemini secret', () => {
    for (const env of ['dev', 'prod']) {
      const t = synth(env).platformJson;
      const agents = taskEnvironments(t).find((x) => x.family === 'agents')!;
      expect(agents.vars).toMatchObject({ TREVEN_MODEL_PRIMARY: 'bedrock', TREVEN_MODEL_SECONDARY: 'none' });
      for (const task of taskEnvironments(t)) {
        expect([...Object.keys(task.vars), ...Object.keys(task.secrets)].filter((n) => n.startsWith('TREVEN_GEMINI_'))).toEqual([]);
      }
      expect(resources(t, 'AWS::SecretsManager::Secret').map(([, p]) => String(p.Name)).filter((n) => n.includes('gemini'))).toEqual([]);
    }
  });

  test('present: project, europe-west2, and the operator-set API key as an ECS secret of agents only', () => {
    const t = synth('prod', { geminiProject: 'treven-prod-ai' }).platformJson;
    const agents = taskEnvironments(t).find((x) => x.family === 'agents')!;
    expect(agents.vars).toMatchObject({
      TREVEN_MODEL_PRIMARY: 'bedrock',
      TREVEN_MODEL_SECONDARY: 'gemini',
      TREVEN_GEMINI_PROJECT: 'treven-prod-ai',
      TREVEN_GEMINI_LOCATION: 'europe-west2',
    });
    const [[secretId, secret]] = resources(t, 'AWS::SecretsManager::Secret').filter(([, p]) => String(p.Name).endsWith('/gemini-api-key'));
    expect(secret.Name).toBe('treven/prod/gemini-api-key');
    expect(agents.secrets.TREVEN_GEMINI_API_KEY).toEqual({ Ref: secretId });
    expect(agents.vars.TREVEN_GEMINI_API_KEY).toBeUndefined();
    // Only the agents execution role may read it.
    const readers = resources(t, 'AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p.PolicyDocument).includes(`"Ref":"${secretId}"`));
    expect(readers).toHaveLength(1);
    expect(JSON.stringify(readers[0][1].Roles)).toMatch(/Agents.*ExecutionRole/);
    models(t, { env: 'prod' });
  });

  test('a bad project id is refused', () => {
    expect(() => buildApp(new App({ context: { env: 'dev', geminiProject: 'Not A Project' } }))).toThrow(/geminiProject/);
  });
});

describe('mesh CA seed and its rotation', () => {
  test('one generated 64-character secret; every execution role may read it, no task role', () => {
    const t = synth('prod').platformJson;
    const [[seedId, seed]] = resources(t, 'AWS::SecretsManager::Secret').filter(([, p]) => p.Name === 'treven/prod/mesh-ca-seed');
    expect(seed.GenerateSecretString).toMatchObject({ PasswordLength: 64, ExcludePunctuation: true });
    const readers = resources(t, 'AWS::IAM::Policy')
      .filter(([, p]) => JSON.stringify(p.PolicyDocument).includes(`"Ref":"${seedId}"`))
      .map(([id]) => id);
    expect(readers).toHaveLength(6);
    expect(readers.every((id) => /ExecutionRole/.test(id))).toBe(true);
  });

  test('-c meshCaAlsoTrust=AWSPENDING|AWSPREVIOUS adds TREVEN_MESH_CA_SEED_PREVIOUS from that version stage', () => {
    expect(taskEnvironments(synth('prod').platformJson).every((x) => x.secrets.TREVEN_MESH_CA_SEED_PREVIOUS === undefined)).toBe(true);
    for (const stage of ['AWSPENDING', 'AWSPREVIOUS']) {
      for (const task of taskEnvironments(synth('prod', { meshCaAlsoTrust: stage }).platformJson)) {
        expect(JSON.stringify(task.secrets.TREVEN_MESH_CA_SEED_PREVIOUS)).toMatch(new RegExp(`"::${stage}:"`));
      }
    }
    expect(() => buildApp(new App({ context: { env: 'dev', meshCaAlsoTrust: 'yesterday' } }))).toThrow(/meshCaAlsoTrust/);
  });
});

describe('per-principal mesh signing keys', () => {
  const t = () => synth('prod', { agentCore: 'true' }).platformJson;

  test('one empty secret per principal, named for it; the custom resource writes each', () => {
    const secrets = signingKeySecrets(t());
    expect(Object.keys(secrets).sort()).toEqual([...MESH_PRINCIPALS].sort());
    for (const principal of MESH_PRINCIPALS) {
      const p = t().Resources[secrets[principal]].Properties;
      expect(p.Name).toBe(`treven/prod/mesh-signing-key/${principal}`);
      expect(p.SecretString).toBeUndefined();
      expect(p.GenerateSecretString).toBeUndefined();
    }
    const cr = t().Resources[meshKeysResource(t())].Properties;
    expect(cr.Secrets).toEqual(Object.fromEntries(MESH_PRINCIPALS.map((p) => [p, { Ref: secrets[p] }])));
    expect(cr).toMatchObject({ Generation: '1', PublishOnly: 'false', KeepPrevious: 'true' });
  });

  test('every task: its own principal\'s secret by ARN and every public key from the custom resource', () => {
    const secrets = signingKeySecrets(t());
    const cr = meshKeysResource(t());
    for (const task of taskEnvironments(t())) {
      expect({ task: task.family, id: task.vars.TREVEN_MESH_SIGNING_KEY_SECRET_ID, keys: task.vars.TREVEN_MESH_PUBLIC_KEYS }).toEqual({
        task: task.family,
        id: { Ref: secrets[principalOfFamily(task.family)] },
        keys: { 'Fn::GetAtt': [cr, 'PublicKeys'] },
      });
    }
    const [[, runtime]] = resources(t(), 'AWS::BedrockAgentCore::Runtime');
    expect(runtime.EnvironmentVariables.TREVEN_MESH_SIGNING_KEY_SECRET_ID).toEqual({ Ref: secrets['agent-runtime'] });
    expect(runtime.EnvironmentVariables.TREVEN_MESH_PUBLIC_KEYS).toEqual({ 'Fn::GetAtt': [cr, 'PublicKeys'] });
  });

  test('each task role reads only its own key; execution roles none; no task the operator\'s; the gateway no service\'s', () => {
    const readers = signingKeyReaders(t());
    const tds = serviceTaskDefinitions(t()).map(([, p]) => p);
    const family = (p: any) => String(p.Family).replace(/^treven-prod-/, '');
    for (const td of tds) {
      const taskRole = td.TaskRoleArn['Fn::GetAtt'][0];
      expect({ family: family(td), reads: [...(readers.get(taskRole) ?? [])] }).toEqual({ family: family(td), reads: [principalOfFamily(family(td))] });
      expect({ family: family(td), execution: [...(readers.get(td.ExecutionRoleArn['Fn::GetAtt'][0]) ?? [])] }).toEqual({ family: family(td), execution: [] });
    }
    const [[, runtime]] = resources(t(), 'AWS::BedrockAgentCore::Runtime');
    expect([...readers.get(runtime.RoleArn['Fn::GetAtt'][0])!]).toEqual(['agent-runtime']);
    // The operator's key: only the Lambda that writes every key.
    const operatorReaders = [...readers].filter(([, ps]) => ps.has('operator')).map(([role]) => role);
    expect(operatorReaders).toHaveLength(1);
    expect([...readers.get(operatorReaders[0])!].sort()).toEqual([...MESH_PRINCIPALS].sort());
    expect(operatorReaders[0]).toMatch(/^CustomTrevenMeshKeysProvider/);
  });

  test('the key Lambda: Node.js 24, code from lambda/mesh-keys, may only get, put and relabel the seven secrets', () => {
    const s = synth('prod', { agentCore: 'true' });
    const cr = s.platformJson.Resources[meshKeysResource(s.platformJson)];
    const fnId = cr.Properties.ServiceToken['Fn::GetAtt'][0];
    const fn = s.platformJson.Resources[fnId];
    expect(fn.Properties).toMatchObject({ Runtime: 'nodejs24.x', Handler: '__entrypoint__.handler', Timeout: 120 });
    const assetDir = path.join(s.app.outdir, `asset.${String(fn.Properties.Code.S3Key).replace(/\.zip$/, '')}`);
    expect(fs.readdirSync(assetDir).sort()).toEqual(['__entrypoint__.js', 'index.js', 'keys.js']);
    const role = s.platformJson.Resources[fn.Properties.Role['Fn::GetAtt'][0]].Properties;
    expect(role.Policies).toHaveLength(1);
    expect(role.Policies[0].PolicyDocument.Statement).toEqual([
      {
        Effect: 'Allow',
        Action: ['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecretVersionStage'],
        Resource: MESH_PRINCIPALS.map((p) => ({ Ref: signingKeySecrets(s.platformJson)[p] })),
      },
    ]);
  });

  test('the shared mesh key is gone: no TREVEN_MESH_KEY* anywhere, no mesh-signing-key(-material) secret', () => {
    for (const tpl of [t(), synth('dev').platformJson]) {
      expect(JSON.stringify(tpl)).not.toMatch(/TREVEN_MESH_KEY/);
      const names = resources(tpl, 'AWS::SecretsManager::Secret').map(([, p]) => String(p.Name));
      expect(names.filter((n) => /\/mesh-signing-key(-material)?$/.test(n))).toEqual([]);
    }
  });

  test('-c meshKeyGeneration, meshKeyPublishOnly, meshKeyKeepPrevious reach the custom resource; bad values are refused', () => {
    const tpl = synth('dev', { meshKeyGeneration: '3', meshKeyPublishOnly: 'true', meshKeyKeepPrevious: 'false' }).platformJson;
    expect(tpl.Resources[meshKeysResource(tpl)].Properties).toMatchObject({ Generation: '3', PublishOnly: 'true', KeepPrevious: 'false' });
    for (const [key, value] of [['meshKeyGeneration', '0'], ['meshKeyGeneration', 'next'], ['meshKeyPublishOnly', 'yes'], ['meshKeyKeepPrevious', '1']]) {
      expect(() => buildApp(new App({ context: { env: 'dev', [key]: value } }))).toThrow(new RegExp(key));
    }
  });
});

describe('AgentCore runtime (-c agentCore=true)', () => {
  const t = () => synth('prod', { agentCore: 'true' }).platformJson;

  test('gets what the agents role reads: https URLs of tenants, documents and reports, models, the CA seed by id', () => {
    const [[, runtime]] = resources(t(), 'AWS::BedrockAgentCore::Runtime');
    const vars = runtime.EnvironmentVariables;
    expect(vars).toMatchObject({
      TREVEN_ENV: 'prod',
      TREVEN_DOCUMENTS_URL: 'https://documents.treven.internal:50052',
      TREVEN_REPORTS_URL: 'https://reports.treven.internal:50053',
      TREVEN_MODEL_PRIMARY: 'bedrock',
      TREVEN_MODEL_SECONDARY: 'none',
    });
    const [[seedId]] = resources(t(), 'AWS::SecretsManager::Secret').filter(([, p]) => p.Name === 'treven/prod/mesh-ca-seed');
    expect(vars.TREVEN_MESH_CA_SEED_SECRET_ID).toEqual({ Ref: seedId });
    expect(Object.keys(vars).filter((n) => n.startsWith('TREVEN_') && !READS.agents.includes(n))).toEqual([]);
    // Its role may read the seed.
    const roleId = JSON.stringify(runtime.RoleArn).match(/"(AgentCoreRole[A-Za-z0-9]+)"/)![1];
    const policies = resources(t(), 'AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p.Roles).includes(roleId));
    expect(JSON.stringify(policies)).toContain(`"Ref":"${seedId}"`);
  });

  test('may reach tenants :50051 (audit), documents :50052 and reports :50053, nothing else of the mesh', () => {
    const [[sgId]] = resources(t(), 'AWS::EC2::SecurityGroup').filter(([, p]) => String(p.GroupDescription).startsWith('Bedrock AgentCore'));
    const ingress = resources(t(), 'AWS::EC2::SecurityGroupIngress')
      .filter(([, p]) => String(JSON.stringify(p.SourceSecurityGroupId)).includes(sgId))
      .map(([, p]) => p.FromPort)
      .sort();
    expect(ingress).toEqual([50051, 50052, 50053]);
    const egress = resources(t(), 'AWS::EC2::SecurityGroupEgress')
      .filter(([, p]) => String(JSON.stringify(p.GroupId)).includes(sgId))
      .map(([, p]) => p.FromPort)
      .sort();
    expect(egress).toEqual([50051, 50052, 50053]);
    for (const name of Object.keys(CHECKS)) CHECKS[name](t(), { env: 'prod' });
  });

  test('with Gemini configured the runtime still has no secondary (its variables are plain text)', () => {
    const [[, runtime]] = resources(synth('prod', { agentCore: 'true', geminiProject: 'treven-prod-ai' }).platformJson, 'AWS::BedrockAgentCore::Runtime');
    expect(runtime.EnvironmentVariables.TREVEN_MODEL_SECONDARY).toBe('none');
    expect(Object.keys(runtime.EnvironmentVariables).filter((n) => n.startsWith('TREVEN_GEMINI_'))).toEqual([]);
  });
});
