/**
 * The Bedrock guardrail of the agents role: a second check on personal data,
 * after the agents service's own detector (which stays the gate).
 *
 * - Every Converse call of the agents service carries it (`guardrailConfig`,
 *   synchronous streaming): Bedrock checks the prompt and the answer.
 * - Tool results, which Converse's guardrail does not assess, go through
 *   `ApplyGuardrail` (source INPUT) before they are sent back to the model.
 *
 * The sensitive-information filter ANONYMIZEs the personal data an analyst's
 * research legitimately touches (names, contact details, addresses, official
 * identifiers, vehicle and bank references): a source that names an official
 * or a victim must not stop the conversation, and the model never needs the
 * real value, so it sees `{NAME}`, `{EMAIL}`… as the platform's own
 * redaction shows `[NAME]`, `[EMAIL]`. It BLOCKs secrets that have no place
 * in any research text and mean a leak (card security codes and expiry
 * dates, PINs, passwords, AWS keys): the whole input or answer is refused.
 * Input and output are both checked.
 *
 * CloudFormation never changes a published guardrail version: the version
 * resource's description carries a hash of the configuration, so a change
 * to the filters publishes a new version and the tasks move to it.
 */
import { createHash } from 'crypto';
import * as bedrock from 'aws-cdk-lib/aws-bedrock';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { Settings } from './config';

/** Masked (`{TYPE}`) in prompts, tool results and answers. */
export const GUARDRAIL_ANONYMIZE: readonly string[] = [
  'NAME',
  'EMAIL',
  'PHONE',
  'ADDRESS',
  'UK_NATIONAL_INSURANCE_NUMBER',
  'UK_NATIONAL_HEALTH_SERVICE_NUMBER',
  'UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER',
  'US_PASSPORT_NUMBER',
  'US_SOCIAL_SECURITY_NUMBER',
  'DRIVER_ID',
  'IP_ADDRESS',
  'LICENSE_PLATE',
  'VEHICLE_IDENTIFICATION_NUMBER',
  'INTERNATIONAL_BANK_ACCOUNT_NUMBER',
  'US_BANK_ACCOUNT_NUMBER',
  'CREDIT_DEBIT_CARD_NUMBER',
];

/** Refused whole: secrets no research text has a use for. */
export const GUARDRAIL_BLOCK: readonly string[] = [
  'CREDIT_DEBIT_CARD_CVV',
  'CREDIT_DEBIT_CARD_EXPIRY',
  'PIN',
  'PASSWORD',
  'AWS_ACCESS_KEY',
  'AWS_SECRET_KEY',
];

/** The action that lets the agents role use the guardrail (Converse and ApplyGuardrail). */
export const GUARDRAIL_ACTIONS = ['bedrock:ApplyGuardrail'];

export interface PiiGuardrailProps {
  readonly settings: Settings;
}

/** The guardrail, its published version, and what the agents role needs of them. */
export class PiiGuardrail extends Construct {
  readonly guardrail: bedrock.CfnGuardrail;
  readonly version: bedrock.CfnGuardrailVersion;

  constructor(scope: Construct, id: string, props: PiiGuardrailProps) {
    super(scope, id);
    const entity = (type: string, action: 'ANONYMIZE' | 'BLOCK') => ({
      type,
      action,
      inputAction: action,
      outputAction: action,
      inputEnabled: true,
      outputEnabled: true,
    });
    const sensitiveInformationPolicyConfig = {
      piiEntitiesConfig: [
        ...GUARDRAIL_ANONYMIZE.map((t) => entity(t, 'ANONYMIZE')),
        ...GUARDRAIL_BLOCK.map((t) => entity(t, 'BLOCK')),
      ],
    };
    const blockedInputMessaging =
      'This request was withheld: it contains personal data or secrets the assistant may not receive.';
    const blockedOutputsMessaging =
      'This answer was withheld: it contained personal data or secrets the assistant may not send.';
    this.guardrail = new bedrock.CfnGuardrail(this, 'Guardrail', {
      name: `treven-pii-${props.settings.env.envName}`,
      description: 'Treven agents: personal data masked, secrets blocked, on model input, output and tool results',
      blockedInputMessaging,
      blockedOutputsMessaging,
      sensitiveInformationPolicyConfig,
    });
    const fingerprint = createHash('sha256')
      .update(JSON.stringify({ sensitiveInformationPolicyConfig, blockedInputMessaging, blockedOutputsMessaging }))
      .digest('hex')
      .slice(0, 16);
    this.version = new bedrock.CfnGuardrailVersion(this, 'Version', {
      guardrailIdentifier: this.guardrail.attrGuardrailId,
      description: `Treven PII guardrail, configuration ${fingerprint}`,
    });
  }

  /** `TREVEN_GUARDRAIL_ID` and `TREVEN_GUARDRAIL_VERSION` (the published version, never DRAFT). */
  environment(): Record<string, string> {
    return {
      TREVEN_GUARDRAIL_ID: this.guardrail.attrGuardrailId,
      TREVEN_GUARDRAIL_VERSION: this.version.attrVersion,
    };
  }

  /** `bedrock:ApplyGuardrail` on this guardrail only. */
  statement(): iam.PolicyStatement {
    return new iam.PolicyStatement({
      sid: 'ApplyPiiGuardrail',
      actions: GUARDRAIL_ACTIONS,
      resources: [this.guardrail.attrGuardrailArn],
    });
  }
}
