/**
 * Builds the CDK app for the environment named in the context: the registry
 * stack and the platform stack, tags, and the cdk-nag AwsSolutions checks.
 * Used by bin/treven.ts (the CLI) and by the tests, so both synthesise the
 * very same thing.
 */
import { App, Aspects, Tags } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readSettings, REGION, Settings } from './config';
import { acknowledgeFindings } from './nag';
import { RegistryStack } from './registry';
import { TrevenStack } from './treven-stack';

export interface TrevenApp {
  readonly app: App;
  readonly settings: Settings;
  readonly registry: RegistryStack;
  readonly platform: TrevenStack;
}

/** Adds both stacks of one environment to `app`. */
export function buildApp(app: App): TrevenApp {
  const settings = readSettings(app.node);
  const envName = settings.env.envName;
  const env = { account: settings.account, region: REGION };

  const registry = new RegistryStack(app, `TrevenRegistry-${envName}`, {
    env,
    settings,
    description: `Treven ${envName}: ECR repository for the treven image`,
    terminationProtection: envName === 'prod',
  });
  const platform = new TrevenStack(app, `Treven-${envName}`, {
    env,
    settings,
    description: `Treven ${envName}: the gRPC mesh, its stores and its edge in eu-west-2`,
    terminationProtection: envName === 'prod',
  });
  platform.addStackDependency(registry);

  // Cost-allocation tags on every resource that takes them, except three
  // types whose Tags property is recent in CloudFormation (older cfn-lint
  // releases reject it) and which carry no cost of their own.
  const excludeResourceTypes = [
    'AWS::ApplicationAutoScaling::ScalableTarget',
    'AWS::ElasticLoadBalancingV2::Listener',
    'AWS::ElasticLoadBalancingV2::ListenerRule',
  ];
  Tags.of(app).add('project', 'treven', { excludeResourceTypes });
  Tags.of(app).add('environment', envName, { excludeResourceTypes });

  acknowledgeFindings(registry, platform, settings);
  // Errors fail `cdk synth`; every acknowledged finding carries its reason.
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return { app, settings, registry, platform };
}
