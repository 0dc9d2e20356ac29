/**
 * One ECS Fargate service running the `treven` image with one role
 * (`treven serve --target <role>`): its own task role (granted by the
 * caller, nothing else), its own execution role and log group, rolling
 * deploys with the circuit breaker (automatic rollback), autoscaling on CPU
 * and memory, and, for gRPC services, a Cloud Map A record
 * `<name>.treven.internal` that the mesh re-resolves.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as servicediscovery from 'aws-cdk-lib/aws-servicediscovery';
import { Construct } from 'constructs';
import { EnvConfig, ServiceSpec } from './config';
import { SUBNET_APP } from './network';

export interface TrevenServiceProps {
  readonly spec: ServiceSpec;
  readonly env: EnvConfig;
  readonly cluster: ecs.ICluster;
  readonly repository: ecr.IRepository;
  readonly imageTag: string;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly environment: Record<string, string>;
  readonly secrets?: Record<string, ecs.Secret>;
  /** Register `<name>.<namespace>` (gRPC services). */
  readonly namespace?: servicediscovery.IPrivateDnsNamespace;
  /**
   * Container health check through `treven healthcheck --addr 127.0.0.1:<port>`
   * (grpc.health.v1). The gateway is checked by its load balancer instead.
   */
  readonly grpcHealthCheck: boolean;
  /** Behind a load balancer: gives tasks time to pass its health checks. */
  readonly behindLoadBalancer: boolean;
}

/** Task definition + Fargate service + autoscaling for one role. */
export class TrevenService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: TrevenServiceProps) {
    super(scope, id);
    const { spec, env } = props;

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/treven/${env.envName}/${spec.name}`,
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      family: `treven-${env.envName}-${spec.name}`,
      cpu: spec.cpu,
      memoryLimitMiB: spec.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    // The root filesystem is read-only; /tmp is a task-local scratch volume.
    this.taskDefinition.addVolume({ name: 'tmp' });

    this.container = this.taskDefinition.addContainer('treven', {
      containerName: 'treven',
      image: ecs.ContainerImage.fromEcrRepository(props.repository, props.imageTag),
      command: ['serve', '--target', spec.target],
      portMappings: [{ containerPort: spec.port, protocol: ecs.Protocol.TCP, name: spec.name }],
      environment: props.environment,
      secrets: props.secrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: spec.name }),
      readonlyRootFilesystem: true,
      essential: true,
      stopTimeout: Duration.seconds(30),
      healthCheck: props.grpcHealthCheck
        ? {
            command: ['CMD', '/usr/local/bin/treven', 'healthcheck', '--addr', `127.0.0.1:${spec.port}`],
            interval: Duration.seconds(15),
            timeout: Duration.seconds(5),
            retries: 3,
            startPeriod: Duration.seconds(30),
          }
        : undefined,
    });
    this.container.addMountPoints({ containerPath: '/tmp', sourceVolume: 'tmp', readOnly: false });

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: env.minTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      vpcSubnets: { subnetGroupName: SUBNET_APP },
      securityGroups: [props.securityGroup],
      assignPublicIp: false,
      platformVersion: ecs.FargatePlatformVersion.LATEST,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      healthCheckGracePeriod: props.behindLoadBalancer ? Duration.seconds(60) : undefined,
      cloudMapOptions: props.namespace
        ? {
            cloudMapNamespace: props.namespace,
            name: spec.name,
            dnsRecordType: servicediscovery.DnsRecordType.A,
            dnsTtl: Duration.seconds(10),
            container: this.container,
            containerPort: spec.port,
          }
        : undefined,
    });

    const scaling = this.service.autoScaleTaskCount({ minCapacity: env.minTasks, maxCapacity: env.maxTasks });
    scaling.scaleOnCpuUtilization('Cpu', {
      targetUtilizationPercent: 60,
      scaleInCooldown: Duration.seconds(120),
      scaleOutCooldown: Duration.seconds(60),
    });
    scaling.scaleOnMemoryUtilization('Memory', {
      targetUtilizationPercent: 75,
      scaleInCooldown: Duration.seconds(120),
      scaleOutCooldown: Duration.seconds(60),
    });
  }

  /** The task role: the identity the `treven` process calls AWS with. */
  get taskRole() {
    return this.taskDefinition.taskRole;
  }
}
