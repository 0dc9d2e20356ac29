/**
 * Optional (`-c agentCore=true`): a Bedrock AgentCore Runtime running the
 * ARM64 build of the same image (`<tag>-arm64`, Dockerfile stage
 * `agentcore`: `treven serve --target agentcore`, the AgentCore contract
 * `POST /invocations` and `GET /ping` on :8080). aws-cdk-lib has only the
 * L1 `CfnRuntime` for it (the L2 lives in the alpha package
 * `@aws-cdk/aws-bedrock-agentcore-alpha`, which this app does not take on).
 * It runs in the VPC's app subnets with the agents table, its own mesh
 * signing key (principal `agent-runtime`) and the mesh CA seed (both read by
 * secret id), every principal's public key, the same Bedrock model permissions as
 * the agents service, and may reach tenants (the audit log), documents and reports on their gRPC
 * ports (mesh TLS, https Cloud Map URLs).
 */
import { Stack } from 'aws-cdk-lib';
import * as bedrockagentcore from 'aws-cdk-lib/aws-bedrockagentcore';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { CALLS, GRPC_PORTS, REGION, Settings } from './config';
import { bedrockStatements, DYNAMODB_ITEM_ACTIONS, modelEnvironment, serviceUrl, urlVar } from './compute';
import { Data } from './data';
import { PiiGuardrail } from './guardrail';
import { Network, SUBNET_APP } from './network';

export interface AgentCoreProps {
  readonly settings: Settings;
  readonly network: Network;
  readonly data: Data;
  readonly repository: ecr.IRepository;
  /** The Bedrock guardrail the agent loop applies (as the ECS agents service does). */
  readonly guardrail: PiiGuardrail;
}

/** The AgentCore runtime and its execution role. */
export class AgentCore extends Construct {
  readonly runtime: bedrockagentcore.CfnRuntime;
  readonly role: iam.Role;
  /** The runtime's ENIs: nothing inbound, HTTPS out to AWS APIs. */
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: AgentCoreProps) {
    super(scope, id);
    const { settings, network, data } = props;
    const stack = Stack.of(this);
    const envName = settings.env.envName;

    this.securityGroup = new ec2.SecurityGroup(this, 'Sg', {
      vpc: network.vpc,
      description: 'Bedrock AgentCore runtime: outbound to AWS APIs and the services the agents role calls',
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (HTTPS) through NAT');
    // The agent loop calls what the agents role calls (documents, reports)
    // over mesh TLS: an egress rule here and an ingress rule on each callee.
    for (const callee of CALLS.agents) {
      network.serviceSg[callee].connections.allowFrom(
        this.securityGroup,
        ec2.Port.tcp(GRPC_PORTS[callee]),
        `AgentCore runtime calls ${callee} (gRPC)`,
      );
    }

    this.role = new iam.Role(this, 'Role', {
      description: 'Execution role of the Treven AgentCore runtime',
      assumedBy: new iam.ServicePrincipal('bedrock-agentcore.amazonaws.com', {
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: { 'aws:SourceArn': `arn:${stack.partition}:bedrock-agentcore:${REGION}:${stack.account}:*` },
        },
      }),
    });
    props.repository.grantPull(this.role);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RuntimeLogs',
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [
          `arn:${stack.partition}:logs:${REGION}:${stack.account}:log-group:/aws/bedrock-agentcore/runtimes/*`,
        ],
      }),
    );
    bedrockStatements(stack, settings.bedrockRegions).forEach((s) => this.role.addToPrincipalPolicy(s));
    this.role.addToPrincipalPolicy(props.guardrail.statement());
    const table = data.tables.agents;
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: DYNAMODB_ITEM_ACTIONS, resources: [table.tableArn, `${table.tableArn}/index/*`] }),
    );
    // It signs as `agent-runtime` and reads no other principal's key.
    data.meshKeys.secrets['agent-runtime'].grantRead(this.role);
    // The runtime has no ECS secrets: the binary reads the CA seed itself
    // (TREVEN_MESH_CA_SEED_SECRET_ID, AWSCURRENT and AWSPREVIOUS).
    data.meshCaSeed.grantRead(this.role);

    this.runtime = new bedrockagentcore.CfnRuntime(this, 'Runtime', {
      agentRuntimeName: `treven_agents_${envName}`,
      description: 'Treven agent loop behind the AgentCore Runtime contract',
      agentRuntimeArtifact: {
        containerConfiguration: { containerUri: `${props.repository.repositoryUri}:${settings.imageTag}-arm64` },
      },
      networkConfiguration: {
        networkMode: 'VPC',
        networkModeConfig: {
          subnets: network.vpc.selectSubnets({ subnetGroupName: SUBNET_APP }).subnetIds,
          securityGroups: [this.securityGroup.securityGroupId],
        },
      },
      protocolConfiguration: 'HTTP',
      roleArn: this.role.roleArn,
      // Plain text (AgentCore has no secret injection): only ARNs, names and
      // URLs. No Gemini secondary here, since its API key would be plain text.
      environmentVariables: agentCoreEnvironment(settings, data, props.guardrail),
    });
    this.runtime.node.addDependency(this.role);
  }
}

/** The runtime's environment: what the agents role reads, secrets by id only. */
export function agentCoreEnvironment(settings: Settings, data: Data, guardrail: PiiGuardrail): Record<string, string> {
  const vars: Record<string, string> = {
    TREVEN_ENV: settings.env.envName,
    TREVEN_LOG_FORMAT: 'json',
    AWS_REGION: REGION,
    TREVEN_MESH_SIGNING_KEY_SECRET_ID: data.meshKeys.secrets['agent-runtime'].secretArn,
    TREVEN_MESH_PUBLIC_KEYS: data.meshKeys.publicKeys,
    TREVEN_MESH_CA_SEED_SECRET_ID: data.meshCaSeed.secretArn,
    TREVEN_AGENTS_TABLE: data.tables.agents.tableName,
    ...modelEnvironment(settings, { gemini: false }),
    ...guardrail.environment(),
  };
  if (settings.otlpEndpoint) vars.OTEL_EXPORTER_OTLP_ENDPOINT = settings.otlpEndpoint;
  for (const callee of CALLS.agents) vars[urlVar(callee)] = serviceUrl(callee);
  return vars;
}
