'use strict';
/**
 * StepChange sample DBOS application (@dbos-inc/dbos-sdk 5.0.2, plain JavaScript, Node 20).
 *
 * The TypeScript twin of samples/python/app.py: a small DBOS program that connects to a
 * Conductor-compatible control plane (StepChange by default) and serves a tiny HTTP page for
 * starting workflows. It is configured only through environment variables; see README.md.
 *
 * Run it with:  npm start   (or: node app.js)
 */

const http = require('node:http');
const crypto = require('node:crypto');
// The SDK 5.0.2 by default; DBOS_SDK_PACKAGE=dbos-sdk-530 runs @dbos-inc/dbos-sdk 5.3.0
// (an npm alias), whose Conductor client is not open source: run it with no conductor.
const { DBOS } = require(process.env.DBOS_SDK_PACKAGE || '@dbos-inc/dbos-sdk');

const QUEUE_NAME = 'greetings';
const APPROVAL_TOPIC = 'approval';

// ------------------------------------------------------------------------------------------
// Logging (our own lines; DBOS logs through its own logger)
// ------------------------------------------------------------------------------------------

function log(level, message) {
  const line = `${new Date().toISOString()} ${level} sample: ${message}`;
  if (level === 'ERROR' || level === 'WARNING') {
    console.error(line);
  } else {
    console.log(line);
  }
}

function fatal(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

// ------------------------------------------------------------------------------------------
// Configuration (environment variables only)
// ------------------------------------------------------------------------------------------

function env(name, defaultValue) {
  const value = process.env[name];
  return value === undefined ? defaultValue : value;
}

function redactUrl(raw) {
  // Hide a password in a database URL before logging it.
  try {
    const url = new URL(raw);
    if (url.password) {
      url.password = '***';
      return url.toString();
    }
  } catch {
    // Not parseable: log it as is only if it has no "user:pass@" part.
    if (/\/\/[^/@]*:[^/@]*@/.test(raw)) return '(unparseable URL with credentials)';
  }
  return raw;
}

function buildConfig() {
  const appName = env('DBOS_APP_NAME', 'sample-ts') || 'sample-ts';

  const dbUrl = (process.env.DBOS_SYSTEM_DATABASE_URL || '').trim();
  if (!dbUrl) {
    fatal(
      'DBOS_SYSTEM_DATABASE_URL is required: the DBOS TypeScript SDK 5.x needs a Postgres system ' +
        'database, e.g. DBOS_SYSTEM_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sample_ts_dbos_sys ' +
        '(the database is created if missing).',
    );
  }

  const conductorUrl = env('DBOS_CONDUCTOR_URL', 'ws://127.0.0.1:8001').trim();
  const conductorKey = process.env.DBOS_CONDUCTOR_KEY || '';
  if (conductorUrl && !conductorKey) {
    fatal(
      'DBOS_CONDUCTOR_KEY is required when DBOS_CONDUCTOR_URL is set ' +
        `(DBOS_CONDUCTOR_URL=${conductorUrl}). Set DBOS_CONDUCTOR_KEY, or set ` +
        'DBOS_CONDUCTOR_URL= (empty) to run without a conductor.',
    );
  }

  let metadata = { sample: 'typescript' };
  const metadataRaw = process.env.DBOS_EXECUTOR_METADATA || '';
  if (metadataRaw.trim()) {
    try {
      metadata = JSON.parse(metadataRaw);
    } catch (err) {
      fatal(`DBOS_EXECUTOR_METADATA is not valid JSON: ${err.message}`);
    }
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      fatal('DBOS_EXECUTOR_METADATA must be a JSON object');
    }
  }

  const applicationVersion = env('DBOS_APPLICATION_VERSION', 'tsv1') || 'tsv1';
  const schema = process.env.DBOS_SYSTEM_SCHEMA || '';

  const config = {
    name: appName,
    systemDatabaseUrl: dbUrl,
    applicationVersion,
    // Pinned to "info": at debug level the SDK logs the conductor URL, which contains the key.
    logLevel: 'info',
  };
  if (schema) config.systemDatabaseSchemaName = schema;

  // In the TS SDK the conductor settings are launch options, not config.
  const launchOptions = {};
  if (conductorUrl) {
    launchOptions.conductorURL = conductorUrl;
    launchOptions.conductorKey = conductorKey;
    launchOptions.conductorExecutorMetadata = metadata;
  }

  const host = env('SAMPLE_HTTP_HOST', '127.0.0.1') || '127.0.0.1';
  const port = Number.parseInt(env('SAMPLE_HTTP_PORT', '8010') || '8010', 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fatal('SAMPLE_HTTP_PORT must be a port number');
  }

  const summary = {
    app_name: appName,
    system_database_url: redactUrl(dbUrl),
    application_version: applicationVersion,
    conductor_url: conductorUrl || '(none)',
    conductor_key: conductorUrl ? '(set)' : '(none)',
    executor_metadata: JSON.stringify(metadata),
    system_schema: schema || '(default)',
    poison_disarmed: poisonDisarmed() ? 'yes' : 'no',
  };
  return { config, launchOptions, summary, host, port };
}

function poisonDisarmed() {
  return process.env.POISON_DISARMED === '1';
}

// ------------------------------------------------------------------------------------------
// Workflows and steps (names are pinned so they stay stable across refactors)
// ------------------------------------------------------------------------------------------

const fetchStep = DBOS.registerStep(
  async function fetch(name) {
    return { name, greeting: 'hello', fetchedAt: new Date() };
  },
  { name: 'fetch' },
);

const shoutStep = DBOS.registerStep(
  async function shout(profile, times) {
    const name = String(profile.name);
    if (name.startsWith('fail')) {
      throw new Error('bad input ' + name);
    }
    return `${profile.greeting} ${name}`.toUpperCase() + '!'.repeat(Math.max(times, 1));
  },
  { name: 'shout' },
);

const recordAuditStep = DBOS.registerStep(
  async function recordAudit(text) {
    return { length: text.length, words: text.split(/\s+/).filter(Boolean).length, audited: true };
  },
  { name: 'record_audit' },
);

const auditGreeting = DBOS.registerWorkflow(
  async function auditGreeting(text) {
    return await recordAuditStep(text);
  },
  { name: 'audit_greeting' },
);

const greet = DBOS.registerWorkflow(
  async function greet(name, times = 2) {
    const count = Math.max(Number(times) || 0, 1);
    const profile = await fetchStep(name);
    if (name === 'poison' && !poisonDisarmed()) {
      log('WARNING', `poison workflow ${DBOS.workflowID}: exiting the process with code 3`);
      process.exit(3);
    }
    await DBOS.setEvent('stage', 'fetched');
    const text = await shoutStep(profile, count);
    for (let i = 0; i < count; i++) {
      await DBOS.writeStream('progress', { step: i + 1, of: count, text });
    }
    await DBOS.closeStream('progress');
    const child = await DBOS.startWorkflow(auditGreeting)(text);
    const audit = await child.getResult();
    await DBOS.setEvent('stage', 'done');
    return { greeting: text, audit };
  },
  { name: 'greet' },
);

const requestApprovalStep = DBOS.registerStep(
  async function requestApproval(reason) {
    return { reason, requestedAt: new Date().toISOString() };
  },
  { name: 'request_approval' },
);

const waitForApproval = DBOS.registerWorkflow(
  async function waitForApproval(reason = 'deploy', timeoutSeconds = 300) {
    const request = await requestApprovalStep(reason);
    await DBOS.setEvent('approval_status', 'waiting');
    const message = await DBOS.recv(APPROVAL_TOPIC, timeoutSeconds);
    const outcome = message === null ? 'timed_out' : 'received';
    await DBOS.setEvent('approval_status', outcome);
    return { request, outcome, message };
  },
  { name: 'wait_for_approval' },
);

// What a dynamic schedule runs (DBOS.createSchedule, or a DBOSClient naming `tick`): it receives
// its fire time and the schedule's context.
DBOS.registerWorkflow(
  async function tick(scheduledAt, context) {
    return `tick at ${scheduledAt.toISOString()} with ${JSON.stringify(context)}`;
  },
  { name: 'tick' },
);

const napStep = DBOS.registerStep(
  async function nap(seconds) {
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    return seconds;
  },
  { name: 'nap' },
);

const finishStep = DBOS.registerStep(
  async function finish(seconds) {
    return `slept ${seconds}s`;
  },
  { name: 'finish' },
);

const slowTask = DBOS.registerWorkflow(
  async function slowTask(seconds = 30) {
    const half = Math.max(seconds, 0) / 2;
    await napStep(half); // a step that is itself slow
    await DBOS.sleep(half * 1000); // a durable sleep (milliseconds)
    return await finishStep(seconds);
  },
  { name: 'slow_task' },
);

// ------------------------------------------------------------------------------------------
// HTTP page (node:http only)
// ------------------------------------------------------------------------------------------

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function indexPage(app, body) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>StepChange sample app</title></head>
<body>
<h1>StepChange sample app (${escapeHtml(app)})</h1>
${body}
<h2>Start a workflow</h2>
<ul>
  <li><a href="/?name=world">greet world</a> &middot;
      <a href="/?name=fail1">greet fail1 (ERROR)</a> &middot;
      <a href="/?name=poison">greet poison (crashes the process)</a></li>
  <li><a href="/enqueue?name=queued">enqueue greet on the greetings queue</a></li>
  <li><a href="/slow?seconds=30">slow_task for 30 s</a></li>
  <li><a href="/approval">wait_for_approval</a> (then send it a message)</li>
</ul>
<form action="/"><input name="name" value="world"> times <input name="times" value="2" size="2">
  workflow id <input name="workflow_id" placeholder="optional"> <button>greet</button></form>
<form action="/enqueue"><input name="name" value="queued">
  workflow id <input name="workflow_id" placeholder="optional"> <button>enqueue</button></form>
<form action="/slow">seconds <input name="seconds" value="30" size="4">
  workflow id <input name="workflow_id" placeholder="optional"> <button>slow</button></form>
<form action="/approval">timeout <input name="timeout" value="300" size="4">
  workflow id <input name="workflow_id" placeholder="optional"> <button>approval</button></form>
<form action="/send">workflow id <input name="workflow_id">
  message <input name="message" value="approved"> <button>send</button></form>
<form action="/workflow">workflow id <input name="workflow_id"> <button>status</button></form>
</body></html>
`;
}

class BadRequest extends Error {}

function newId() {
  return crypto.randomUUID();
}

function number(params, key, defaultValue, integer) {
  const raw = params.get(key);
  if (raw === null || raw === '') return defaultValue;
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new BadRequest(`${key} must be ${integer ? 'an integer' : 'a number'}`);
  }
  return value;
}

function describeError(err) {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  if (err && typeof err === 'object' && 'message' in err) {
    return `${err.name || 'Error'}: ${err.message}`;
  }
  return String(err);
}

async function describe(workflowID, wait) {
  const lines = [`workflow_id: ${workflowID}`];
  const handle = DBOS.retrieveWorkflow(workflowID);
  if (wait) {
    try {
      const result = await handle.getResult();
      lines.push('status: SUCCESS', `result: ${JSON.stringify(result)}`);
    } catch (err) {
      lines.push('status: ERROR', `error: ${describeError(err)}`);
    }
    return lines;
  }
  const status = await handle.getStatus();
  if (status === null) {
    throw new BadRequest(`no workflow with id ${workflowID}`);
  }
  lines.push(`status: ${status.status}`);
  if (status.status === 'SUCCESS') {
    lines.push(`result: ${JSON.stringify(status.output)}`);
  } else if (status.error !== undefined && status.error !== null) {
    lines.push(`error: ${describeError(status.error)}`);
  }
  return lines;
}

const routes = {
  async '/'(params) {
    if (!params.has('name')) return [];
    const times = number(params, 'times', 2, true);
    const workflowID = params.get('workflow_id') || newId();
    const handle = await DBOS.startWorkflow(greet, { workflowID })(params.get('name'), times);
    return describe(handle.workflowID, true);
  },

  async '/enqueue'(params) {
    const times = number(params, 'times', 2, true);
    const workflowID = params.get('workflow_id') || newId();
    const handle = await DBOS.startWorkflow(greet, { workflowID, queueName: QUEUE_NAME })(
      params.get('name') || 'queued',
      times,
    );
    return [`queue: ${QUEUE_NAME}`, ...(await describe(handle.workflowID, false))];
  },

  async '/slow'(params) {
    const seconds = number(params, 'seconds', 30, false);
    const workflowID = params.get('workflow_id') || newId();
    const handle = await DBOS.startWorkflow(slowTask, { workflowID })(seconds);
    return describe(handle.workflowID, false);
  },

  async '/approval'(params) {
    const timeout = number(params, 'timeout', 300, false);
    const reason = params.get('reason') || 'deploy';
    const workflowID = params.get('workflow_id') || newId();
    const handle = await DBOS.startWorkflow(waitForApproval, { workflowID })(reason, timeout);
    const wid = handle.workflowID;
    const link = `/send?workflow_id=${encodeURIComponent(wid)}&message=approved`;
    return [
      ...(await describe(wid, false)),
      { html: `send: <a href="${escapeHtml(link)}">${escapeHtml(link)}</a>` },
    ];
  },

  async '/send'(params) {
    const wid = params.get('workflow_id') || '';
    if (!wid) throw new BadRequest('workflow_id is required');
    const message = params.get('message') || 'approved';
    await DBOS.send(wid, message, APPROVAL_TOPIC);
    return [
      `sent ${JSON.stringify(message)} on topic ${JSON.stringify(APPROVAL_TOPIC)}`,
      ...(await describe(wid, false)),
    ];
  },

  async '/workflow'(params) {
    const wid = params.get('workflow_id') || '';
    if (!wid) throw new BadRequest('workflow_id is required');
    return describe(wid, false);
  },
};

function send(res, code, text, contentType) {
  const data = Buffer.from(text, 'utf8');
  res.writeHead(code, { 'Content-Type': contentType, 'Content-Length': data.length });
  res.end(data);
}

function makeServer(appName) {
  return http.createServer((req, res) => {
    const started = Date.now();
    res.on('finish', () => {
      log('INFO', `http ${req.socket.remoteAddress} - "${req.method} ${req.url}" ${res.statusCode} ${Date.now() - started}ms`);
    });
    handle(req, res, appName).catch((err) => {
      log('ERROR', `request ${req.url} failed: ${err && err.stack ? err.stack : err}`);
      if (!res.headersSent) send(res, 500, `error: ${describeError(err)}`, 'text/plain; charset=utf-8');
      else res.destroy();
    });
  });
}

async function handle(req, res, appName) {
  const url = new URL(req.url || '/', 'http://localhost');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'method not allowed', 'text/plain; charset=utf-8');
    return;
  }
  if (url.pathname === '/health') {
    send(res, 200, 'ok', 'text/plain; charset=utf-8');
    return;
  }
  const route = Object.prototype.hasOwnProperty.call(routes, url.pathname) ? routes[url.pathname] : null;
  if (route === null) {
    send(res, 404, 'not found', 'text/plain; charset=utf-8');
    return;
  }
  let lines;
  try {
    lines = await route(url.searchParams);
  } catch (err) {
    if (err instanceof BadRequest) {
      send(res, 400, `bad request: ${err.message}`, 'text/plain; charset=utf-8');
      return;
    }
    throw err;
  }
  let body = '';
  if (lines.length) {
    // Plain lines are escaped; pre-built link lines ({html}) escape their own parts.
    body = '<pre>' + lines.map((l) => (typeof l === 'string' ? escapeHtml(l) : l.html)).join('\n') + '</pre>';
  }
  send(res, 200, indexPage(appName, body), 'text/html; charset=utf-8');
}

// ------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------

async function main() {
  const { config, launchOptions, summary, host, port } = buildConfig();
  for (const [key, value] of Object.entries(summary)) {
    log('INFO', `config ${key}=${value}`);
  }

  let server = null;
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    log('INFO', `received ${signal}, shutting down`);
    if (server) {
      server.close();
      server.closeAllConnections();
    }
    try {
      await DBOS.shutdown();
    } catch (err) {
      log('ERROR', `DBOS.shutdown failed: ${describeError(err)}`);
      process.exit(1);
    }
    log('INFO', 'stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  DBOS.setConfig(config);
  await DBOS.launch(launchOptions);
  // In 5.0.2 queues are database-backed and registered after launch.
  await DBOS.registerQueue(QUEUE_NAME);
  if (stopping) return;

  server = makeServer(config.name);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  log('INFO', `HTTP page at http://${host}:${server.address().port}/`);
}

main().catch((err) => {
  log('ERROR', `startup failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
