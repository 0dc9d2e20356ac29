/**
 * The VPC and every security group of the platform.
 *
 * Three subnet tiers in three AZs:
 * - `public`: NAT gateways and the WebSocket ALB (the only internet-facing
 *   load balancer; it admits CloudFront's origin-facing prefix list only);
 * - `app` (private with egress): ECS tasks, the internal API ALB, the
 *   API Gateway VPC link;
 * - `data` (isolated, no route out): RDS and ElastiCache.
 *
 * Security groups allow nothing outbound by default; each rule below is one
 * edge of "gateway → services → stores" (see CALLS in config.ts). No rule
 * admits 0.0.0.0/0 inbound.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import {
  CALLS,
  DB_PORT,
  GRPC_PORTS,
  POSTGRES_USERS,
  REDIS_PORT,
  REDIS_USERS,
  SERVICE_SPECS,
  ServiceName,
  Settings,
} from './config';

export const SUBNET_PUBLIC = 'public';
export const SUBNET_APP = 'app';
export const SUBNET_DATA = 'data';

export interface NetworkProps {
  readonly settings: Settings;
}

/** The VPC, its flow log and gateway endpoints, and all security groups. */
export class Network extends Construct {
  readonly vpc: ec2.Vpc;
  /** One security group per ECS service. */
  readonly serviceSg: Record<ServiceName, ec2.SecurityGroup>;
  /** Internal ALB in front of gateway-api, reached only by the VPC link. */
  readonly apiAlbSg: ec2.SecurityGroup;
  /** Public ALB in front of gateway-ws, reached only from CloudFront. */
  readonly wsAlbSg: ec2.SecurityGroup;
  /** API Gateway VPC link ENIs. */
  readonly vpcLinkSg: ec2.SecurityGroup;
  readonly dbSg: ec2.SecurityGroup;
  readonly redisSg: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const { env } = props.settings;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr('10.40.0.0/16'),
      availabilityZones: props.settings.availabilityZones,
      natGateways: env.natGateways,
      restrictDefaultSecurityGroup: true,
      subnetConfiguration: [
        { name: SUBNET_PUBLIC, subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        { name: SUBNET_APP, subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        { name: SUBNET_DATA, subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 },
      ],
    });

    const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });

    // S3 and DynamoDB traffic stays on the AWS network and costs no NAT time.
    const appSubnets = [{ subnetGroupName: SUBNET_APP }];
    this.vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: appSubnets });
    this.vpc.addGatewayEndpoint('DynamoDbEndpoint', {
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: appSubnets,
    });

    const sg = (sgId: string, description: string) =>
      new ec2.SecurityGroup(this, sgId, { vpc: this.vpc, description, allowAllOutbound: false });

    this.apiAlbSg = sg('ApiAlbSg', 'Internal API ALB: from the API Gateway VPC link only');
    this.wsAlbSg = sg('WsAlbSg', 'Public WebSocket ALB: from CloudFront origin-facing addresses only');
    this.vpcLinkSg = sg('VpcLinkSg', 'API Gateway VPC link: to the internal API ALB only');
    this.dbSg = sg('DbSg', 'RDS PostgreSQL: from tenants and reports only');
    this.redisSg = sg('RedisSg', 'ElastiCache Redis: from gateway, reports and agents only');

    const names = Object.keys(SERVICE_SPECS) as ServiceName[];
    this.serviceSg = Object.fromEntries(
      names.map((name) => {
        const group = sg(`${pascal(name)}Sg`, `ECS service ${name}`);
        // AWS APIs (ECR, Secrets Manager, CloudWatch Logs, Bedrock, Cognito
        // JWKS) are reached over HTTPS through the NAT gateway.
        group.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (HTTPS) through NAT');
        return [name, group];
      }),
    ) as Record<ServiceName, ec2.SecurityGroup>;

    // Edge: VPC link → internal API ALB (HTTP 80 inside the VPC).
    this.apiAlbSg.connections.allowFrom(this.vpcLinkSg, ec2.Port.tcp(80), 'API Gateway VPC link');
    // Edge: CloudFront → public WebSocket ALB (prefix list, not the world).
    const cloudFront = ec2.Peer.prefixList(props.settings.cloudFrontPrefixListId);
    this.wsAlbSg.addIngressRule(cloudFront, ec2.Port.tcp(80), 'CloudFront origin-facing (HTTP)');
    if (props.settings.wsCertificateArn) {
      this.wsAlbSg.addIngressRule(cloudFront, ec2.Port.tcp(443), 'CloudFront origin-facing (HTTPS)');
    }

    // Mesh: each caller → the gRPC port of each service it calls.
    for (const caller of names) {
      for (const callee of CALLS[caller]) {
        this.serviceSg[callee].connections.allowFrom(
          this.serviceSg[caller],
          ec2.Port.tcp(GRPC_PORTS[callee]),
          `${caller} calls ${callee} (gRPC)`,
        );
      }
    }
    // Stores: owners only.
    for (const user of POSTGRES_USERS) {
      this.dbSg.connections.allowFrom(this.serviceSg[user], ec2.Port.tcp(DB_PORT), `${user} to Postgres`);
    }
    for (const user of REDIS_USERS) {
      this.redisSg.connections.allowFrom(this.serviceSg[user], ec2.Port.tcp(REDIS_PORT), `${user} to Redis`);
    }
  }
}

/** `gateway-api` → `GatewayApi` (construct ids). */
export function pascal(name: string): string {
  return name
    .split(/[-_]/)
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join('');
}
