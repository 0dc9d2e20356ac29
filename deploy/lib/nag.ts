/**
 * Every cdk-nag AwsSolutions finding this app acknowledges, each with the
 * reason it is acceptable, on the one resource it concerns. Nothing is
 * suppressed stack-wide: a new finding anywhere fails `cdk synth` and the
 * tests (test/nag.test.ts). README "cdk-nag acknowledgements" mirrors this.
 */
import { IConstruct } from 'constructs';
import { NagPackSuppression, NagSuppressions } from 'cdk-nag';
import { RegistryStack } from './registry';
import { TrevenStack } from './treven-stack';
import { Settings } from './config';

function ack(construct: IConstruct, suppressions: NagPackSuppression[], children = true): void {
  for (const s of suppressions) {
    if (s.reason.trim().length < 20) throw new Error(`nag acknowledgement ${s.id} needs a real reason`);
  }
  NagSuppressions.addResourceSuppressions(construct, suppressions, children);
}

/** Applies the acknowledgements to both stacks. */
export function acknowledgeFindings(_registry: RegistryStack, platform: TrevenStack, settings: Settings): void {
  const { data, compute, edge } = platform;
  const dev = settings.env.envName === 'dev';

  // --- Secrets without automatic rotation -------------------------------------
  const rotationReason =
    'Rotated by the documented procedure in deploy/README.md ("Rotating secrets"): the value is read by ECS at task ' +
    'start, so a rotation is paired with a forced redeployment; a Lambda rotation alone would break running tasks.';
  const secrets: IConstruct[] = [
    data.db.node.findChild('Secret'),
    // The services' own database users (JSON shaped for RDS single-user rotation).
    data.node.findChild('DbUserTenants'),
    data.node.findChild('DbUserReports'),
    data.meshCaSeed,
    data.redisAuthToken,
    data.redisUrl,
    compute.originVerify,
  ];
  if (data.geminiApiKey) secrets.push(data.geminiApiKey);
  for (const secret of secrets) {
    ack(secret, [{ id: 'AwsSolutions-SMG4', reason: rotationReason }]);
  }
  const meshKeyReason =
    'Rotated by a deploy with a new -c meshKeyGeneration (deploy/README.md "Rotating secrets"): the TrevenMeshKeys ' +
    'custom resource writes the new seeds and publishes old and new public keys while the services roll; a Secrets ' +
    'Manager rotation Lambda could not update every task\'s TREVEN_MESH_PUBLIC_KEYS.';
  for (const secret of Object.values(data.meshKeys.secrets)) {
    ack(secret, [{ id: 'AwsSolutions-SMG4', reason: meshKeyReason }]);
  }

  // --- RDS ----------------------------------------------------------------------
  const db: NagPackSuppression[] = [
    {
      id: 'AwsSolutions-RDS11',
      reason:
        'Postgres listens on 5432, the port in the TREVEN_*_DATABASE_URL contract; the instance is in isolated subnets ' +
        'and its security group admits only the tenants and reports tasks, so port obfuscation adds nothing.',
    },
  ];
  if (dev) {
    db.push(
      {
        id: 'AwsSolutions-RDS3',
        reason: 'dev is single-AZ to halve its cost (AWS-ARCHITECTURE.md: Multi-AZ for production); prod is Multi-AZ.',
      },
      {
        id: 'AwsSolutions-RDS10',
        reason: 'dev is torn down with `cdk destroy` (final snapshot kept); prod has deletion protection on.',
      },
    );
  }
  ack(data.db, db);

  // --- ElastiCache ----------------------------------------------------------------
  const redis: NagPackSuppression[] = [
    {
      id: 'AwsSolutions-AEC5',
      reason:
        'Redis listens on 6379 (the TREVEN_REDIS_URL contract); it is in isolated subnets, admits only the gateway, ' +
        'reports and agents security groups, requires TLS and an AUTH token.',
    },
  ];
  if (dev) {
    redis.push({
      id: 'AwsSolutions-AEC4',
      reason: 'dev runs one cache.t3.micro node (cost); Redis is never the only copy of anything. prod is Multi-AZ with a replica.',
    });
  }
  ack(data.redis, redis);

  // --- ECS --------------------------------------------------------------------------
  for (const taskDefinition of [...Object.values(compute.services).map((svc) => svc.taskDefinition), compute.migrateTask]) {
    ack(taskDefinition, [
      {
        id: 'AwsSolutions-ECS2',
        reason:
          'The plain environment holds only non-secret configuration (environment name, region, listen addresses, ' +
          'Cloud Map URLs, table/bucket names, secret ARNs, the DB URL without password, the CA bundle path, the mesh ' +
          'TLS names, the mesh public keys, the model choice; for the migrate task the owner\'s user name). The DB passwords, ' +
          'the Redis URL with its AUTH token, the mesh CA seed and the Gemini API key are injected from Secrets Manager.',
      },
    ]);
    ack(taskDefinition.obtainExecutionRole(), [
      {
        id: 'AwsSolutions-IAM5',
        appliesTo: ['Resource::*'],
        reason:
          'ecr:GetAuthorizationToken has no resource-level permissions (AWS docs: "Actions, resources, and condition keys ' +
          'for Amazon ECR"); the pull actions themselves are scoped to the treven repository.',
      },
    ]);
  }

  // The documents role works on objects of its own bucket (keys `<org>/...`
  // decided per request) and on its own table's GSIs.
  const documentsRole = compute.services.documents.taskRole;
  ack(documentsRole, [
    {
      id: 'AwsSolutions-IAM5',
      appliesTo: [`Resource::<${idOf(platform, data.dataBucket)}.Arn>/*`],
      reason:
        'Objects of the treven-data bucket only: keys are `<org>/<document>` chosen per request (presigned URLs are ' +
        'minted inside the caller\'s prefix by the service); the bucket belongs to the documents service alone.',
    },
    {
      id: 'AwsSolutions-IAM5',
      appliesTo: [`Resource::<${idOf(platform, data.tables.documents)}.Arn>/index/*`],
      reason: 'The GSIs of the documents table only (GSI1 from resources/dynamodb-tables.json), for Query.',
    },
  ]);
  const agentsTableAck: NagPackSuppression = {
    id: 'AwsSolutions-IAM5',
    appliesTo: [`Resource::<${idOf(platform, data.tables.agents)}.Arn>/index/*`],
    reason: 'The GSIs of the agents table only (GSI1 from resources/dynamodb-tables.json), for Query.',
  };
  ack(compute.services.agents.taskRole, [agentsTableAck]);
  if (platform.agentCore) {
    ack(platform.agentCore.role, [
      agentsTableAck,
      {
        id: 'AwsSolutions-IAM5',
        appliesTo: ['Resource::*'],
        reason: 'ecr:GetAuthorizationToken has no resource-level permissions; image pulls are scoped to the treven repository.',
      },
      {
        id: 'AwsSolutions-IAM5',
        appliesTo: [`Resource::arn:aws:logs:eu-west-2:${settings.account}:log-group:/aws/bedrock-agentcore/runtimes/*`],
        reason: 'AgentCore names the runtime log group after the generated runtime id; scoped to the AgentCore runtime prefix.',
      },
    ]);
  }

  // --- API Gateway -------------------------------------------------------------------
  for (const child of edge.api.httpApi.node.children) {
    if (/^GET--(healthz|readyz|openapi\.json)$/.test(child.node.id)) {
      ack(child, [
        {
          id: 'AwsSolutions-APIG4',
          reason:
            'Public by design: the gateway\'s liveness/readiness probes and the OpenAPI document carry no organisation ' +
            'data; every other route requires the Cognito JWT.',
        },
      ]);
    }
    if (/^GET--shared--/.test(child.node.id)) {
      ack(child, [
        {
          id: 'AwsSolutions-APIG4',
          reason:
            'Partner links (`/shared/{token}`) are opened by partners without an account: the token is an expiring ' +
            'HMAC-signed link that the reports service verifies, and checks against the live report-access grant, on ' +
            'every access; the gateway holds no organisation rights for it.',
        },
      ]);
    }
  }

  // --- CloudFront ------------------------------------------------------------------------
  const cdn: NagPackSuppression[] = [
    {
      id: 'AwsSolutions-CFR1',
      reason: 'Analysts and partner organisations work across many countries; access is controlled by Cognito, not geography.',
    },
  ];
  if (!settings.webAclArn) {
    cdn.push({
      id: 'AwsSolutions-CFR2',
      reason:
        'A CLOUDFRONT-scope web ACL must live in us-east-1 (outside this eu-west-2 stack); attach one with ' +
        '-c webAclArn=... (README). The API is throttled by API Gateway and the gateway rate-limits per organisation.',
    });
  }
  if (!settings.certificateArn) {
    cdn.push({
      id: 'AwsSolutions-CFR4',
      reason:
        'Without a custom domain CloudFront serves its default *.cloudfront.net certificate, whose policy cannot be ' +
        'chosen. Deploys with -c domainName/-c certificateArn get TLSv1.2_2021 and this finding disappears.',
    });
  }
  if (!settings.wsCertificateArn) {
    cdn.push({
      id: 'AwsSolutions-CFR5',
      reason:
        'The WebSocket ALB origin has no certificate until a domain is given (-c wsOriginDomainName/-c wsCertificateArn ' +
        'switch it to HTTPS-only TLSv1.2). Until then it is reachable only from CloudFront\'s origin-facing prefix ' +
        'list and forwards only requests carrying the secret origin header.',
    });
  }
  ack(edge.distribution, cdn);
}

/** The logical id CDK gives a construct's CloudFormation resource (as cdk-nag prints it). */
function idOf(stack: TrevenStack, construct: IConstruct): string {
  const child = construct.node.defaultChild as { logicalId?: string } | undefined;
  const res = (child ?? construct) as unknown as { logicalId: string };
  return stack.resolve(res.logicalId) as string;
}
