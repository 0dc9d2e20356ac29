/**
 * Metrics in CloudWatch: a collector sidecar in every ECS task, the alarms an
 * operator is paged on, and one dashboard (docs/observability.md "Metrics").
 *
 * The telemetry path, and why this one: every task runs the AWS
 * Distro for OpenTelemetry (ADOT) collector as a non-essential sidecar that
 * scrapes the `treven` container's Prometheus endpoint over the task's
 * loopback (the gateway's `:8080/metrics`, every gRPC service's admin port
 * `:9464/metrics`) and writes the samples to CloudWatch as embedded metric
 * format (EMF) log events with the `awsemf` exporter. Chosen over
 *  - EMF written by the process itself: it would need a second, AWS-only
 *    exporter in the binary and couple the request path to log volume;
 *    scraping reads the same `/metrics` text a laptop shows;
 *  - the CloudWatch agent's Prometheus mode: it needs a separate scrape file
 *    and an SSM parameter per service, where the collector takes its whole
 *    configuration from one variable, and ADOT also speaks OTLP should
 *    traces be sent to it later;
 *  - PutMetricData from the process: per-call API cost and throttling, and
 *    credentials for CloudWatch in the application container.
 * EMF costs log ingestion only, needs only `logs:PutLogEvents` /
 * `logs:CreateLogStream` on one log group, and keeps the raw samples
 * queryable in Logs Insights.
 *
 * Alarms: the gateway's 5xx rate and p99 latency come from the internal API
 * load balancer (what clients saw, including a gateway that does not
 * answer; a p99 needs CloudWatch's own distributions, which explicit-bucket
 * histograms in EMF cannot give); the report job age and the model circuit
 * breaker come from the application's metrics through the sidecar.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { ADMIN_PORT, GATEWAY_API_PORT, GRPC_SERVICES, REGION, ServiceName, Settings } from './config';
import { Compute } from './compute';

/** The CloudWatch namespace of the application's metrics. */
export const METRICS_NAMESPACE = 'Treven';

/** The collector image, pinned (ADOT collector; public ECR, no pull credentials). */
export const COLLECTOR_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3';

/** The sidecar's container name. */
export const COLLECTOR_CONTAINER = 'metrics';

/** How often the sidecar scrapes `/metrics`. */
export const SCRAPE_INTERVAL_SECONDS = 30;

/** Alarm thresholds (README of deploy/ "Alarms" mirrors these). */
export const THRESHOLDS = {
  /** Percent of API requests answered 5xx (by the gateway or the load balancer), over 5 minutes. */
  http5xxPercent: 5,
  /** p99 of the API load balancer's target response time, seconds, over 5 minutes. */
  p99LatencySeconds: 2,
  /** Age of the oldest queued or running report job, seconds. */
  jobAgeSeconds: 900,
} as const;

/** Where the `treven` container of `name` serves `/metrics` inside its task. */
export function metricsPort(name: ServiceName): number {
  return (GRPC_SERVICES as readonly string[]).includes(name) ? ADMIN_PORT : GATEWAY_API_PORT;
}

/**
 * Which scraped metrics become CloudWatch metrics, with which dimensions
 * (the rest stays in the EMF log events, queryable in Logs Insights).
 * Names are the Prometheus ones the binary serves; counters may or may not
 * keep their `_total` suffix through the receiver, so both are matched.
 */
export const METRIC_DECLARATIONS = [
  {
    dimensions: [['service']],
    metric_name_selectors: [
      '^treven_reports_jobs_(queued|running|oldest_age_seconds)$',
      '^treven_reports_jobs_(attempts|retries)(_total)?$',
      '^treven_gateway_ws_(connections|subscriptions)$',
      '^treven_gateway_rate_limit_rejections(_total)?$',
    ],
  },
  { dimensions: [['service', 'outcome']], metric_name_selectors: ['^treven_reports_jobs_finished(_total)?$'] },
  {
    dimensions: [['service', 'gen_ai_provider_name']],
    metric_name_selectors: [
      '^treven_model_breaker_state$',
      '^treven_model_breaker_opened(_total)?$',
      '^gen_ai_server_time_to_first_token_seconds$',
    ],
  },
  {
    dimensions: [['service', 'gen_ai_provider_name', 'gen_ai_token_type']],
    metric_name_selectors: ['^treven_model_tokens(_total)?$'],
  },
  {
    dimensions: [['service', 'gen_ai_provider_name', 'error_type']],
    metric_name_selectors: ['^treven_model_errors(_total)?$'],
  },
  {
    dimensions: [['service'], ['service', 'http_route']],
    metric_name_selectors: ['^http_server_request_duration_seconds$'],
  },
  {
    dimensions: [['service'], ['service', 'rpc_method']],
    metric_name_selectors: ['^rpc_server_call_duration_seconds$'],
  },
  {
    dimensions: [['service', 'db_client_connection_state']],
    metric_name_selectors: ['^db_client_connection_count$'],
  },
];

/**
 * The collector's configuration for one service (JSON, which the collector
 * reads as YAML): scrape the task's own `/metrics`, label every sample with
 * the service, write EMF to `logGroupName`.
 */
export function collectorConfig(service: ServiceName, envName: string, logGroupName: string): string {
  return JSON.stringify({
    receivers: {
      prometheus: {
        config: {
          scrape_configs: [
            {
              job_name: 'treven',
              scrape_interval: `${SCRAPE_INTERVAL_SECONDS}s`,
              scrape_timeout: '10s',
              metrics_path: '/metrics',
              static_configs: [
                { targets: [`127.0.0.1:${metricsPort(service)}`], labels: { service, environment: envName } },
              ],
            },
          ],
        },
      },
    },
    processors: { batch: { timeout: '30s' } },
    exporters: {
      awsemf: {
        namespace: METRICS_NAMESPACE,
        region: REGION,
        log_group_name: logGroupName,
        log_stream_name: `${service}/{TaskId}`,
        dimension_rollup_option: 'NoDimensionRollup',
        metric_declarations: METRIC_DECLARATIONS,
      },
    },
    service: {
      pipelines: { metrics: { receivers: ['prometheus'], processors: ['batch'], exporters: ['awsemf'] } },
      telemetry: { logs: { level: 'warn' } },
    },
  });
}

export interface ObservabilityProps {
  readonly settings: Settings;
  readonly compute: Compute;
}

/** The sidecars, the metrics log group, the alarms and the dashboard. */
export class Observability extends Construct {
  /** Where the sidecars write EMF (metrics are extracted from it). */
  readonly metricsLogGroup: logs.LogGroup;
  readonly alarms: {
    readonly http5xx: cloudwatch.Alarm;
    readonly p99Latency: cloudwatch.Alarm;
    readonly jobAge: cloudwatch.Alarm;
    readonly breakerOpen: cloudwatch.Alarm;
  };
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { settings, compute } = props;
    const { env } = settings;

    this.metricsLogGroup = new logs.LogGroup(this, 'MetricsLogs', {
      logGroupName: `/treven/${env.envName}/metrics`,
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    for (const [name, service] of Object.entries(compute.services) as [ServiceName, (typeof compute.services)[ServiceName]][]) {
      service.taskDefinition.addContainer(COLLECTOR_CONTAINER, {
        containerName: COLLECTOR_CONTAINER,
        image: ecs.ContainerImage.fromRegistry(COLLECTOR_IMAGE),
        command: ['--config=env:AOT_CONFIG_CONTENT'],
        environment: { AOT_CONFIG_CONTENT: collectorConfig(name, env.envName, this.metricsLogGroup.logGroupName) },
        // Metrics are not worth a restart of the service: the task runs on without them.
        essential: false,
        readonlyRootFilesystem: true,
        memoryReservationMiB: 64,
        logging: ecs.LogDrivers.awsLogs({ logGroup: service.logGroup, streamPrefix: COLLECTOR_CONTAINER }),
      });
      // The task role (shared by both containers) may write to this one log group only.
      this.metricsLogGroup.grantWrite(service.taskRole);
    }

    // --- Alarms ----------------------------------------------------------------------
    const alb = compute.apiAlb.metrics;
    const fiveMinutes = Duration.minutes(5);
    const errorRate = new cloudwatch.MathExpression({
      label: 'API 5xx %',
      expression: 'IF(requests > 0, 100 * (FILL(target5xx, 0) + FILL(elb5xx, 0)) / requests, 0)',
      usingMetrics: {
        requests: alb.requestCount({ period: fiveMinutes, statistic: 'Sum' }),
        target5xx: alb.httpCodeTarget(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, { period: fiveMinutes, statistic: 'Sum' }),
        elb5xx: alb.httpCodeElb(elbv2.HttpCodeElb.ELB_5XX_COUNT, { period: fiveMinutes, statistic: 'Sum' }),
      },
      period: fiveMinutes,
    });
    const p99 = alb.targetResponseTime({ period: fiveMinutes, statistic: 'p99' });
    const jobAge = new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: 'treven_reports_jobs_oldest_age_seconds',
      dimensionsMap: { service: 'reports' },
      statistic: 'Maximum',
      period: fiveMinutes,
    });
    const breaker = new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName: 'treven_model_breaker_state',
      dimensionsMap: { service: 'agents', gen_ai_provider_name: 'bedrock' },
      statistic: 'Maximum',
      period: Duration.minutes(1),
    });
    const prefix = `treven-${env.envName}`;
    this.alarms = {
      http5xx: errorRate.createAlarm(this, 'Http5xxRate', {
        alarmName: `${prefix}-api-5xx-rate`,
        alarmDescription: `More than ${THRESHOLDS.http5xxPercent}% of API requests answered 5xx in 2 of the last 3 five-minute periods (internal API load balancer).`,
        threshold: THRESHOLDS.http5xxPercent,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      p99Latency: p99.createAlarm(this, 'P99Latency', {
        alarmName: `${prefix}-api-p99-latency`,
        alarmDescription: `p99 of the gateway's response time above ${THRESHOLDS.p99LatencySeconds} s for 15 minutes (internal API load balancer).`,
        threshold: THRESHOLDS.p99LatencySeconds,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      jobAge: jobAge.createAlarm(this, 'ReportJobAge', {
        alarmName: `${prefix}-report-job-age`,
        alarmDescription: `A report generation job has been queued or running for more than ${THRESHOLDS.jobAgeSeconds / 60} minutes (treven_reports_jobs_oldest_age_seconds).`,
        threshold: THRESHOLDS.jobAgeSeconds,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      breakerOpen: breaker.createAlarm(this, 'ModelBreakerOpen', {
        alarmName: `${prefix}-model-breaker-open`,
        alarmDescription: 'The Bedrock circuit breaker of the agents service was open in 2 of the last 3 minutes (treven_model_breaker_state = 2): model calls go to the secondary or fail.',
        threshold: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    };
    if (settings.alarmTopicArn) {
      const topic = sns.Topic.fromTopicArn(this, 'AlarmTopic', settings.alarmTopicArn);
      for (const alarm of Object.values(this.alarms)) {
        alarm.addAlarmAction(new cwActions.SnsAction(topic));
        alarm.addOkAction(new cwActions.SnsAction(topic));
      }
    }

    // --- Dashboard ---------------------------------------------------------------------
    const search = (dims: string, metric: string, stat: string, label: string) =>
      new cloudwatch.MathExpression({
        expression: `SEARCH('{${METRICS_NAMESPACE},${dims}} MetricName="${metric}"', '${stat}', 300)`,
        label,
        usingMetrics: {},
        period: fiveMinutes,
      });
    const app = (metricName: string, dimensionsMap: Record<string, string>, statistic = 'Maximum') =>
      new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, dimensionsMap, statistic, period: Duration.minutes(1) });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: prefix,
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          new cloudwatch.AlarmStatusWidget({
            title: 'Alarms',
            alarms: Object.values(this.alarms),
            width: 24,
            height: 3,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'API requests and 5xx % (load balancer)',
            left: [alb.requestCount({ period: fiveMinutes, statistic: 'Sum' })],
            right: [errorRate],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'API latency p50 / p99 (load balancer)',
            left: [
              alb.targetResponseTime({ period: fiveMinutes, statistic: 'p50' }),
              p99,
            ],
            leftAnnotations: [{ value: THRESHOLDS.p99LatencySeconds, label: 'p99 alarm' }],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Gateway requests by route',
            left: [search('service,http_route', 'http_server_request_duration_seconds', 'SampleCount', 'requests')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'RPC calls by method',
            left: [search('service,rpc_method', 'rpc_server_call_duration_seconds', 'SampleCount', 'calls')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'RPC mean latency by method (s)',
            left: [search('service,rpc_method', 'rpc_server_call_duration_seconds', 'Average', 'seconds')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Postgres connections in use',
            left: [search('service,db_client_connection_state', 'db_client_connection_count', 'Maximum', 'connections')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Report jobs: queued / running',
            left: [
              app('treven_reports_jobs_queued', { service: 'reports' }),
              app('treven_reports_jobs_running', { service: 'reports' }),
            ],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Oldest report job (s)',
            left: [jobAge],
            leftAnnotations: [{ value: THRESHOLDS.jobAgeSeconds, label: 'alarm' }],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Report jobs finished by outcome',
            left: [search('service,outcome', 'treven_reports_jobs_finished_total', 'Sum', 'jobs')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Model breaker (0 closed, 1 half-open, 2 open)',
            left: [breaker],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Model tokens by type',
            left: [search('service,gen_ai_provider_name,gen_ai_token_type', 'treven_model_tokens_total', 'Sum', 'tokens')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'Model time to first token (mean, s)',
            left: [search('service,gen_ai_provider_name', 'gen_ai_server_time_to_first_token_seconds', 'Average', 'seconds')],
            width: 8,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'WebSocket connections / subscriptions',
            left: [
              app('treven_gateway_ws_connections', { service: 'gateway-ws' }),
              app('treven_gateway_ws_subscriptions', { service: 'gateway-ws' }),
            ],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Rate-limit rejections',
            left: [search('service', 'treven_gateway_rate_limit_rejections_total', 'Sum', 'rejections')],
            width: 12,
          }),
        ],
      ],
    });
  }
}
