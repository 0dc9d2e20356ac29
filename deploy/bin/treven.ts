#!/usr/bin/env node
/**
 * CDK entry point: `npx cdk synth -c env=dev` (or prod). See README.md.
 */
import { App } from 'aws-cdk-lib';
import { buildApp } from '../lib/app';

buildApp(new App());
