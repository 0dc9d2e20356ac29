/**
 * The Bedrock guardrail of the agents role (issue #14): personal data
 * masked and secrets blocked on model input, output and tool results; a
 * published version; `bedrock:ApplyGuardrail` on that guardrail only, for
 * the agents task role and the AgentCore runtime role and nobody else; its id
 * and version in exactly their environments.
 */
import { GUARDRAIL_ANONYMIZE, GUARDRAIL_BLOCK } from '../lib/guardrail';
import { refOf, resources, taskEnvironments } from './checks';
import { synth, TemplateJson } from './synth';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function guardrailOf(t: TemplateJson): [string, Any] {
  const all = resources(t, 'AWS::Bedrock::Guardrail');
  expect(all).toHaveLength(1);
  return all[0];
}

function versionOf(t: TemplateJson): [string, Any] {
  const all = resources(t, 'AWS::Bedrock::GuardrailVersion');
  expect(all).toHaveLength(1);
  return all[0];
}

/** Every Allow statement with the roles its policy is attached to. */
function statements(t: TemplateJson): { roles: string[]; statement: Any }[] {
  return resources(t, 'AWS::IAM::Policy').flatMap(([, p]) =>
    (p.PolicyDocument.Statement as Any[]).map((statement) => ({
      roles: (p.Roles ?? []).map((r: Any) => refOf(r) ?? JSON.stringify(r)),
      statement,
    })),
  );
}

const actionsOf = (s: Any): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);

function taskRoleOf(t: TemplateJson, family: string): string {
  const [[, td]] = resources(t, 'AWS::ECS::TaskDefinition').filter(([, p]) => String(p.Family).endsWith(`-${family}`));
  return refOf(td.TaskRoleArn)!;
}

describe.each(['dev', 'prod'])('%s: the PII guardrail', (env) => {
  const t = () => synth(env).platformJson;

  test('masks personal data and blocks secrets, on input and output, with messages for both', () => {
    const [, g] = guardrailOf(t());
    expect(g.Name).toBe(`treven-pii-${env}`);
    expect(g.BlockedInputMessaging).toMatch(/withheld/);
    expect(g.BlockedOutputsMessaging).toMatch(/withheld/);
    const entities: Record<string, Any> = Object.fromEntries(
      g.SensitiveInformationPolicyConfig.PiiEntitiesConfig.map((e: Any) => [e.Type, e]),
    );
    for (const type of ['EMAIL', 'PHONE', 'NAME', 'ADDRESS', 'UK_NATIONAL_INSURANCE_NUMBER', 'IP_ADDRESS', 'CREDIT_DEBIT_CARD_NUMBER']) {
      expect(entities[type]).toMatchObject({
        Action: 'ANONYMIZE',
        InputAction: 'ANONYMIZE',
        OutputAction: 'ANONYMIZE',
        InputEnabled: true,
        OutputEnabled: true,
      });
    }
    for (const type of ['PASSWORD', 'AWS_SECRET_KEY', 'CREDIT_DEBIT_CARD_CVV']) {
      expect(entities[type]).toMatchObject({ Action: 'BLOCK', InputAction: 'BLOCK', OutputAction: 'BLOCK' });
    }
    expect(Object.keys(entities).sort()).toEqual([...GUARDRAIL_ANONYMIZE, ...GUARDRAIL_BLOCK].sort());
  });

  test('is published as a version named by its configuration', () => {
    const [guardrailId] = guardrailOf(t());
    const [, version] = versionOf(t());
    expect(version.GuardrailIdentifier).toEqual({ 'Fn::GetAtt': [guardrailId, 'GuardrailId'] });
    expect(version.Description).toMatch(/configuration [0-9a-f]{16}$/);
  });

  test('the agents task, and no other, gets its id and published version', () => {
    const [guardrailId] = guardrailOf(t());
    const [versionId] = versionOf(t());
    for (const task of taskEnvironments(t())) {
      if (task.family === 'agents') {
        expect(task.vars.TREVEN_GUARDRAIL_ID).toEqual({ 'Fn::GetAtt': [guardrailId, 'GuardrailId'] });
        expect(task.vars.TREVEN_GUARDRAIL_VERSION).toEqual({ 'Fn::GetAtt': [versionId, 'Version'] });
      } else {
        expect(Object.keys(task.vars).filter((n) => n.startsWith('TREVEN_GUARDRAIL_'))).toEqual([]);
      }
    }
  });

  test('only the agents task role may apply it, and only it', () => {
    const [guardrailId] = guardrailOf(t());
    const apply = statements(t()).filter(({ statement }) =>
      actionsOf(statement).some((a) => a === 'bedrock:ApplyGuardrail' || a === 'bedrock:*'),
    );
    expect(apply).toHaveLength(1);
    expect(apply[0].roles).toEqual([taskRoleOf(t(), 'agents')]);
    expect(actionsOf(apply[0].statement)).toEqual(['bedrock:ApplyGuardrail']);
    expect(apply[0].statement.Resource).toEqual({ 'Fn::GetAtt': [guardrailId, 'GuardrailArn'] });
    expect(apply[0].statement.Effect).toBe('Allow');
  });
});

describe('the PII guardrail with the AgentCore runtime (-c agentCore=true)', () => {
  const t = () => synth('prod', { agentCore: 'true' }).platformJson;

  test('the runtime gets the same guardrail and may apply it, on its ARN only', () => {
    const [guardrailId] = guardrailOf(t());
    const [versionId] = versionOf(t());
    const [[, runtime]] = resources(t(), 'AWS::BedrockAgentCore::Runtime');
    expect(runtime.EnvironmentVariables.TREVEN_GUARDRAIL_ID).toEqual({ 'Fn::GetAtt': [guardrailId, 'GuardrailId'] });
    expect(runtime.EnvironmentVariables.TREVEN_GUARDRAIL_VERSION).toEqual({ 'Fn::GetAtt': [versionId, 'Version'] });
    const runtimeRole = refOf(runtime.RoleArn)!;
    const apply = statements(t()).filter(({ statement }) => actionsOf(statement).includes('bedrock:ApplyGuardrail'));
    expect(apply.map((a) => a.roles).flat().sort()).toEqual([runtimeRole, taskRoleOf(t(), 'agents')].sort());
    for (const { statement } of apply) {
      expect(statement.Resource).toEqual({ 'Fn::GetAtt': [guardrailId, 'GuardrailArn'] });
    }
  });
});
