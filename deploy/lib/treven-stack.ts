/**
 * The platform stack of one environment: network → data → identity →
 * compute → edge → observability (→ AgentCore when asked). The ECR repository lives in the
 * registry stack (deployed first) and is imported by name.
 */
import { CfnOutput, Stack, StackProps } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Construct } from 'constructs';
import { AgentCore } from './agentcore';
import { Compute } from './compute';
import { Settings } from './config';
import { Data } from './data';
import { Edge } from './edge';
import { PiiGuardrail } from './guardrail';
import { Identity } from './identity';
import { Network } from './network';
import { Observability } from './observability';
import { repositoryName } from './registry';

export interface TrevenStackProps extends StackProps {
  readonly settings: Settings;
}

/** Everything in AWS-ARCHITECTURE.md for one environment in eu-west-2. */
export class TrevenStack extends Stack {
  readonly network: Network;
  readonly data: Data;
  readonly identity: Identity;
  readonly compute: Compute;
  readonly edge: Edge;
  readonly guardrail: PiiGuardrail;
  readonly agentCore?: AgentCore;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: TrevenStackProps) {
    super(scope, id, props);
    const { settings } = props;
    // Imported by name: a deterministic ARN, no CloudFormation export that
    // would pin the registry stack.
    const repository = ecr.Repository.fromRepositoryName(this, 'Repository', repositoryName(settings.env.envName));

    this.network = new Network(this, 'Network', { settings });
    this.data = new Data(this, 'Data', { settings, network: this.network });
    this.identity = new Identity(this, 'Identity', { settings });
    this.guardrail = new PiiGuardrail(this, 'Guardrail', { settings });
    this.compute = new Compute(this, 'Compute', {
      settings,
      network: this.network,
      data: this.data,
      identity: this.identity,
      repository,
      guardrail: this.guardrail,
    });
    this.edge = new Edge(this, 'Edge', {
      settings,
      network: this.network,
      data: this.data,
      identity: this.identity,
      compute: this.compute,
    });
    this.observability = new Observability(this, 'Observability', { settings, compute: this.compute });
    if (settings.agentCore) {
      this.agentCore = new AgentCore(this, 'AgentCore', {
        settings,
        network: this.network,
        data: this.data,
        repository,
        guardrail: this.guardrail,
      });
    }

    new CfnOutput(this, 'Url', { value: `https://${this.edge.distribution.distributionDomainName}` });
    new CfnOutput(this, 'SiteBucket', { value: this.edge.siteBucket.bucketName });
    new CfnOutput(this, 'DistributionId', { value: this.edge.distribution.distributionId });
    new CfnOutput(this, 'UserPoolId', { value: this.identity.userPool.userPoolId });
    new CfnOutput(this, 'WebClientId', { value: this.identity.webClient.userPoolClientId });
    new CfnOutput(this, 'CognitoIssuer', { value: this.identity.issuer });
    new CfnOutput(this, 'HostedUiDomain', { value: this.identity.domain.baseUrl() });
    new CfnOutput(this, 'ApiEndpoint', { value: this.edge.api.httpApi.apiEndpoint });
    // `treven admin mint-context` signs as `operator` with this secret (no task can read it).
    new CfnOutput(this, 'OperatorSigningKeySecretArn', { value: this.data.meshKeys.secrets.operator.secretArn });
    new CfnOutput(this, 'MeshPublicKeys', { value: this.data.meshKeys.publicKeys });
    new CfnOutput(this, 'ClusterName', { value: this.compute.cluster.clusterName });
  }
}
