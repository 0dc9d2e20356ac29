/**
 * Context variants: the optional AgentCore runtime, and a deploy with a
 * custom domain, an HTTPS WebSocket origin and a WAF web ACL (the
 * acknowledgements CFR2/CFR4/CFR5 then no longer apply and the stricter
 * settings are in the template). Also: the app refuses a missing env.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { buildApp } from '../lib/app';
import { CHECKS, resources } from './checks';
import { synth } from './synth';

const noNagFindings = (stack: Stack) => {
  const errors = Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*'));
  expect(errors.map((e) => `${e.id}: ${String(e.entry.data).slice(0, 100)}`)).toEqual([]);
};

test('the environment must be named', () => {
  expect(() => buildApp(new App({ context: {} }))).toThrow(/-c env=dev or -c env=prod/);
  expect(() => buildApp(new App({ context: { env: 'staging' } }))).toThrow(/-c env=dev or -c env=prod/);
});

describe('AgentCore runtime (-c agentCore=true)', () => {
  const s = () => synth('dev', { agentCore: 'true', imageTag: 'abc123' });

  test('is absent by default', () => {
    expect(resources(synth('dev').platformJson, 'AWS::BedrockAgentCore::Runtime')).toHaveLength(0);
  });

  test('runs the arm64 image in the app subnets with a least-privilege role', () => {
    const t = s().platformTemplate;
    t.hasResourceProperties('AWS::BedrockAgentCore::Runtime', {
      AgentRuntimeName: 'treven_agents_dev',
      NetworkConfiguration: { NetworkMode: 'VPC' },
      ProtocolConfiguration: 'HTTP',
    });
    const [[, runtime]] = resources(s().platformJson, 'AWS::BedrockAgentCore::Runtime');
    expect(JSON.stringify(runtime.AgentRuntimeArtifact.ContainerConfiguration.ContainerUri)).toMatch(/\/treven-dev:abc123-arm64"/);
    t.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: Match.objectLike({
        Statement: [Match.objectLike({ Principal: { Service: 'bedrock-agentcore.amazonaws.com' } })],
      }),
    });
    for (const name of ['iamLeastPrivilege', 'networkIngress', 'bedrock', 'region']) CHECKS[name](s().platformJson, { env: 'dev' });
    noNagFindings(s().platform);
  });
});

describe('custom domain, HTTPS WebSocket origin, WAF', () => {
  const s = () =>
    synth('prod', {
      domainName: 'treven.example.org',
      certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000',
      wsOriginDomainName: 'ws-origin.treven.example.org',
      wsCertificateArn: 'arn:aws:acm:eu-west-2:123456789012:certificate/11111111-1111-1111-1111-111111111111',
      webAclArn: 'arn:aws:wafv2:us-east-1:123456789012:global/webacl/treven/22222222-2222-2222-2222-222222222222',
    });

  test('viewer TLS 1.2, HTTPS-only origins, web ACL, HTTPS listener', () => {
    const t = s().platformTemplate;
    t.hasResourceProperties('AWS::CloudFront::Distribution', {
      DistributionConfig: Match.objectLike({
        Aliases: ['treven.example.org'],
        ViewerCertificate: Match.objectLike({ MinimumProtocolVersion: 'TLSv1.2_2021' }),
        WebACLId: Match.stringLikeRegexp('^arn:aws:wafv2:us-east-1:'),
      }),
    });
    const cfg = resources(s().platformJson, 'AWS::CloudFront::Distribution')[0][1].DistributionConfig;
    for (const o of cfg.Origins.filter((x: any) => x.CustomOriginConfig)) {
      expect(o.CustomOriginConfig.OriginProtocolPolicy).toBe('https-only');
    }
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Protocol: 'HTTPS', Port: 443 });
    t.resourcePropertiesCountIs('AWS::ElasticLoadBalancingV2::Listener', { Protocol: 'HTTP', Port: 443 }, 0);
    t.hasResourceProperties('AWS::Cognito::UserPoolClient', {
      CallbackURLs: Match.arrayWith(['https://treven.example.org/auth/callback']),
    });
    for (const name of Object.keys(CHECKS)) CHECKS[name](s().platformJson, { env: 'prod' });
  });

  test('no CloudFront finding is left to acknowledge', () => {
    noNagFindings(s().platform);
    const [, cdn] = Object.entries(s().platformJson.Resources).find(([, r]) => r.Type === 'AWS::CloudFront::Distribution')!;
    const acknowledged = (cdn.Metadata?.cdk_nag?.rules_to_suppress ?? []).map((r: { id: string }) => r.id);
    expect(acknowledged).toEqual(['AwsSolutions-CFR1']);
  });
});

test('cdk-nag is live: an unacknowledged finding is reported as an error', () => {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'treven-nag-'));
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  const app = new App({ context: { ...cdkJson.context, env: 'dev' }, outdir });
  const { platform } = buildApp(app);
  const sg = new ec2.SecurityGroup(platform, 'Careless', { vpc: platform.network.vpc, description: 'careless' });
  sg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(22), 'ssh from anywhere');
  // Synthesis itself fails on the error annotation (as `cdk synth` does).
  expect(() => Annotations.fromStack(platform)).toThrow(/AwsSolutions-EC23/);
  fs.rmSync(outdir, { recursive: true, force: true });
});
