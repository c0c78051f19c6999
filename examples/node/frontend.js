// A front end (an IVR, a web chat gateway): creates a task and prints it as JSON.
//   SWITCHBOARD_PROTOS=dist/switchboard-protos-0.1.0 node examples/node/frontend.js 127.0.0.1:50051
'use strict';

const { load, toStruct, fromStruct, waitUntilServing, Router } = require('./switchboard');

async function main() {
  const addresses = (process.argv[2] || '127.0.0.1:50051').split(',');
  const pkg = load();
  await waitUntilServing(pkg, addresses[0]);
  const router = new Router(pkg, addresses);
  try {
    await router.call('AdminService', 'UpsertQueue', { queue: { queue_id: 'support' } });
    const requestId = process.env.REQUEST_ID || `call-${Date.now()}`;
    // Retried with the same client_request_id, a create is never doubled.
    const reply = await router.call('TaskService', 'CreateTask', {
      client_request_id: requestId,
      task: {
        queue_id: 'support',
        channel: 'voice',
        required_skills: { billing: 2 },
        sentiment: -0.5,
        attributes: toStruct({ caller: '+15550100', customer: { tier: 'gold' }, vip: true, calls: 3 }),
      },
    });
    const { task } = reply;
    console.log(JSON.stringify({
      task_id: task.task_id,
      status: task.status,
      created_at_ms: task.created_at_ms,
      attributes: fromStruct(task.attributes),
      queue_position: reply.queue_position,
    }));
  } finally {
    router.close();
  }
}

main().catch((error) => {
  console.error(`frontend: ${error.message}`);
  process.exit(1);
});
