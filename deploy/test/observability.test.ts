/**
 * Metrics in CloudWatch (lib/observability.ts): every task's collector
 * sidecar scrapes that task's own `/metrics` and writes EMF to the metrics
 * log group, which only the task roles may write to; the four alarms watch
 * what they say they watch; the dashboard exists.
 */
import { Match } from 'aws-cdk-lib/assertions';
import { ADMIN_PORT, GATEWAY_API_PORT } from '../lib/config';
import {
  COLLECTOR_CONTAINER,
  COLLECTOR_IMAGE,
  METRICS_NAMESPACE,
  THRESHOLDS,
} from '../lib/observability';
import { resources, serviceTaskDefinitions } from './checks';
import { synth } from './synth';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const flat = (v: any) => JSON.stringify(v);

describe.each(['dev', 'prod'] as const)('%s', (env) => {
  const s = () => synth(env);

  test('every task runs the collector sidecar scraping its own /metrics into EMF', () => {
    // The one-off migrate task has no sidecar: it serves nothing to scrape.
    const taskDefs = serviceTaskDefinitions(s().platformJson);
    expect(taskDefs).toHaveLength(6);
    const logGroups = resources(s().platformJson, 'AWS::Logs::LogGroup').filter(
      ([, p]) => p.LogGroupName === `/treven/${env}/metrics`,
    );
    expect(logGroups).toHaveLength(1);
    const [metricsLogGroup] = logGroups[0];
    for (const [, td] of taskDefs) {
      const family = String(td.Family).replace(`treven-${env}-`, '');
      const [app, sidecar, ...rest] = td.ContainerDefinitions;
      expect(rest).toHaveLength(0);
      expect(app.Name).toBe('treven');
      expect(app.Essential).toBe(true);
      expect(sidecar.Name).toBe(COLLECTOR_CONTAINER);
      expect(sidecar.Image).toBe(COLLECTOR_IMAGE);
      expect(sidecar.Essential).toBe(false);
      expect(sidecar.ReadonlyRootFilesystem).toBe(true);
      expect(sidecar.PortMappings ?? []).toHaveLength(0);
      expect(sidecar.LogConfiguration.LogDriver).toBe('awslogs');
      const vars = Object.fromEntries((sidecar.Environment ?? []).map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]));
      const config = vars.AOT_CONFIG_CONTENT;
      // The config names the log group by reference: it is a Fn::Join.
      const text = flat(config);
      const grpc = !family.startsWith('gateway');
      const port = grpc ? ADMIN_PORT : GATEWAY_API_PORT;
      expect(text).toContain(`127.0.0.1:${port}`);
      expect(text).toContain('\\"metrics_path\\":\\"/metrics\\"');
      expect(text).toContain(`\\"service\\":\\"${family}\\"`);
      expect(text).toContain(`\\"namespace\\":\\"${METRICS_NAMESPACE}\\"`);
      expect(text).toContain('awsemf');
      expect(text).toContain(metricsLogGroup);
      // The gRPC services open the admin port the sidecar scrapes; the gateway serves /metrics on :8080.
      const appVars = Object.fromEntries((app.Environment ?? []).map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]));
      expect(appVars.TREVEN_ADMIN_ADDR).toBe(grpc ? `0.0.0.0:${ADMIN_PORT}` : undefined);
      // Nothing outside the task reaches the admin port: it is not mapped.
      expect((app.PortMappings ?? []).map((m: { ContainerPort: number }) => m.ContainerPort)).not.toContain(ADMIN_PORT);
    }
  });

  test('only the six service task roles may write to the metrics log group, and only log events', () => {
    const t = s().platformJson;
    const [metricsLogGroup] = resources(t, 'AWS::Logs::LogGroup').find(([, p]) => p.LogGroupName === `/treven/${env}/metrics`)!;
    const taskRoles = new Set(
      serviceTaskDefinitions(t).map(([, td]) => td.TaskRoleArn?.['Fn::GetAtt']?.[0] as string),
    );
    expect(taskRoles.size).toBe(6);
    const writers = new Set<string>();
    for (const [, policy] of resources(t, 'AWS::IAM::Policy')) {
      for (const statement of policy.PolicyDocument.Statement) {
        if (!flat(statement.Resource).includes(metricsLogGroup)) continue;
        const actions: string[] = [statement.Action].flat();
        expect(actions.sort()).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents']);
        for (const role of policy.Roles) writers.add(role.Ref);
      }
    }
    expect([...writers].sort()).toEqual([...taskRoles].sort());
  });

  test('alarms: API 5xx rate, p99 latency, report job age, model breaker open', () => {
    const t = s().platformTemplate;
    const alarms = resources(s().platformJson, 'AWS::CloudWatch::Alarm');
    expect(alarms.map(([, a]) => a.AlarmName).sort()).toEqual(
      [`treven-${env}-api-5xx-rate`, `treven-${env}-api-p99-latency`, `treven-${env}-model-breaker-open`, `treven-${env}-report-job-age`],
    );
    // 5xx: target and load-balancer 5xx over all requests of the internal API ALB, as a percentage.
    const rate = alarms.find(([, a]) => a.AlarmName.endsWith('5xx-rate'))![1];
    expect(rate.Threshold).toBe(THRESHOLDS.http5xxPercent);
    const names = rate.Metrics.filter((m: { MetricStat?: unknown }) => m.MetricStat).map(
      (m: { MetricStat: { Metric: { MetricName: string; Namespace: string } } }) => m.MetricStat.Metric.MetricName,
    );
    expect(names.sort()).toEqual(['HTTPCode_ELB_5XX_Count', 'HTTPCode_Target_5XX_Count', 'RequestCount']);
    expect(flat(rate.Metrics)).toContain('AWS/ApplicationELB');
    expect(flat(rate.Metrics)).toMatch(/ApiAlb/);
    // p99 of the target response time.
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `treven-${env}-api-p99-latency`,
      MetricName: 'TargetResponseTime',
      Namespace: 'AWS/ApplicationELB',
      ExtendedStatistic: 'p99',
      Threshold: THRESHOLDS.p99LatencySeconds,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    // The application's own metrics, as the sidecar writes them.
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `treven-${env}-report-job-age`,
      Namespace: METRICS_NAMESPACE,
      MetricName: 'treven_reports_jobs_oldest_age_seconds',
      Dimensions: [{ Name: 'service', Value: 'reports' }],
      Statistic: 'Maximum',
      Threshold: THRESHOLDS.jobAgeSeconds,
    });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: `treven-${env}-model-breaker-open`,
      Namespace: METRICS_NAMESPACE,
      MetricName: 'treven_model_breaker_state',
      Dimensions: Match.arrayWith([{ Name: 'gen_ai_provider_name', Value: 'bedrock' }]),
      Statistic: 'Maximum',
      Threshold: 2,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    const breakerAlarm = alarms.find(([, a]) => a.AlarmName.endsWith('breaker-open'))![1];
    expect(breakerAlarm.Dimensions).toContainEqual({ Name: 'service', Value: 'agents' });
    // The sidecar declares exactly the metrics the alarms read, with their dimensions.
    const sidecarConfig = flat(serviceTaskDefinitions(s().platformJson).map(([, td]) => td.ContainerDefinitions[1].Environment));
    expect(sidecarConfig).toContain('treven_reports_jobs_(queued|running|oldest_age_seconds)');
    expect(sidecarConfig).toContain('^treven_model_breaker_state$');
    // No action without a topic.
    for (const [, a] of alarms) expect(a.AlarmActions ?? []).toHaveLength(0);
  });

  test('a dashboard shows the alarms and the application metrics', () => {
    const dashboards = resources(s().platformJson, 'AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const body = flat(dashboards[0][1].DashboardBody);
    for (const metric of [
      'TargetResponseTime',
      'http_server_request_duration_seconds',
      'rpc_server_call_duration_seconds',
      'treven_reports_jobs_queued',
      'treven_reports_jobs_oldest_age_seconds',
      'treven_model_breaker_state',
      'treven_model_tokens_total',
      'treven_gateway_ws_connections',
      'db_client_connection_count',
    ]) {
      expect(body).toContain(metric);
    }
    expect(body).toContain('alarm');
  });
});

test('with -c alarmTopicArn every alarm notifies the topic on ALARM and OK', () => {
  const topic = 'arn:aws:sns:eu-west-2:123456789012:treven-oncall';
  const alarms = resources(synth('prod', { alarmTopicArn: topic }).platformJson, 'AWS::CloudWatch::Alarm');
  expect(alarms).toHaveLength(4);
  for (const [, a] of alarms) {
    expect(a.AlarmActions).toEqual([topic]);
    expect(a.OKActions).toEqual([topic]);
  }
});
