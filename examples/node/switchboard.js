// Switchboard from Node with @grpc/grpc-js and @grpc/proto-loader: the loader options that work,
// Struct attributes, waiting for health SERVING, retrying UNAVAILABLE and following the leader.
// The protos come from the bundle (`make protos-bundle`, then untar it): SWITCHBOARD_PROTOS
// names its folder.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// keepCase: field names as in the .proto (client_request_id), not camelCase.
// longs: String: int64 fields (*_ms) as strings, never silently rounded JS numbers.
// enums: String: 'TASK_STATUS_PENDING' rather than 1.
// defaults: unset fields present with their default values, as in every other language.
// oneofs: a virtual field names which member of a oneof is set (ConnectResponse.kind).
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const FILES = [
  'switchboard/v1/task_service.proto',
  'switchboard/v1/worker_service.proto',
  'switchboard/v1/admin_service.proto',
  'grpc/health/v1/health.proto',
];

function load(protosDir = process.env.SWITCHBOARD_PROTOS) {
  if (!protosDir) throw new Error('set SWITCHBOARD_PROTOS to the unpacked protos bundle');
  const definition = protoLoader.loadSync(FILES, { ...LOADER_OPTIONS, includeDirs: [path.resolve(protosDir)] });
  return grpc.loadPackageDefinition(definition);
}

// google.protobuf.Struct as proto-loader wants it: {fields: {key: Value}}, each Value with its
// kind in camelCase (stringValue, numberValue, boolValue, structValue, listValue, nullValue) even
// with keepCase, because protobufjs' Struct comes from its own bundled descriptor. A snake_case
// key (string_value) is not an error: it is silently sent as null.
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

function fromValue(value) {
  switch (value.kind) {
    case 'stringValue': return value.stringValue;
    case 'numberValue': return value.numberValue;
    case 'boolValue': return value.boolValue;
    case 'listValue': return value.listValue.values.map(fromValue);
    case 'structValue': return fromStruct(value.structValue);
    default: return null;
  }
}

function fromStruct(struct) {
  return Object.fromEntries(Object.entries(struct.fields || {}).map(([k, v]) => [k, fromValue(v)]));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The startup line ("switchboard serving on ...") is printed before the router leads: wait for
// the health service to say SERVING before the first call.
async function waitUntilServing(pkg, address, timeoutMs = 30000) {
  const health = new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const status = await new Promise((resolve) => {
        health.Check({ service: '' }, { deadline: Date.now() + 2000 }, (error, reply) =>
          resolve(error ? `error ${error.code}` : reply.status));
      });
      if (status === 'SERVING') return;
      if (Date.now() > deadline) throw new Error(`${address} is not SERVING (${status})`);
      await sleep(100);
    }
  } finally {
    health.close();
  }
}

// One unary call with the leader-following retry: UNAVAILABLE means not confirmed (a standby, a
// failover, Redis down); the same request (for CreateTask: the same client_request_id) is sent
// again, to the router a standby names in the `switchboard-leader` trailing metadata if any.
class Router {
  constructor(pkg, addresses) {
    this.pkg = pkg;
    this.addresses = addresses;
    this.current = addresses[0];
    this.clients = new Map();
  }

  client(service, address) {
    const key = `${service}@${address}`;
    if (!this.clients.has(key)) {
      const Client = this.pkg.switchboard.v1[service];
      this.clients.set(key, new Client(address, grpc.credentials.createInsecure()));
    }
    return this.clients.get(key);
  }

  async call(service, method, request, { attempts = 12, timeoutMs = 5000 } = {}) {
    let backoffMs = 100;
    for (let attempt = 1; ; attempt += 1) {
      const client = this.client(service, this.current);
      try {
        return await new Promise((resolve, reject) => {
          client[method](request, { deadline: Date.now() + timeoutMs }, (error, reply) =>
            (error ? reject(error) : resolve(reply)));
        });
      } catch (error) {
        if (error.code !== grpc.status.UNAVAILABLE || attempt >= attempts) throw error;
        const leader = error.metadata && error.metadata.get('switchboard-leader')[0];
        if (leader) {
          this.current = String(leader);
        } else {
          const next = (this.addresses.indexOf(this.current) + 1) % this.addresses.length;
          this.current = this.addresses[next];
          await sleep(backoffMs);
          backoffMs = Math.min(backoffMs * 2, 1000);
        }
      }
    }
  }

  close() {
    for (const client of this.clients.values()) client.close();
  }
}

module.exports = { LOADER_OPTIONS, load, toStruct, fromStruct, waitUntilServing, Router, grpc, sleep };
