// An agent desktop: registers the agent, connects, accepts the first offer, completes the task
// and ends its wrap-up, then exits. A Connect stream that ends for any reason (the router
// restarted, a failover: UNAVAILABLE with the new leader in `switchboard-leader`) is opened
// again; offers may then come twice, so they are de-duplicated by reservation_id.
//   SWITCHBOARD_PROTOS=dist/switchboard-protos-0.1.0 node examples/node/desktop.js 127.0.0.1:50051
'use strict';

const { load, waitUntilServing, Router, grpc, sleep } = require('./switchboard');

async function main() {
  const addresses = (process.argv[2] || '127.0.0.1:50051').split(',');
  const workerId = process.env.WORKER_ID || 'ana';
  const pkg = load();
  await waitUntilServing(pkg, addresses[0]);
  const router = new Router(pkg, addresses);
  await router.call('WorkerService', 'UpsertWorker', {
    worker: { worker_id: workerId, display_name: 'Ana', skills: { billing: 4 }, capacity_by_channel: { voice: 1 } },
  });
  const seen = new Set();
  let done = false;
  try {
    while (!done) {
      const stream = router.client('WorkerService', router.current).Connect();
      done = await new Promise((resolve, reject) => {
        stream.on('data', (message) => handle(message).catch(reject));
        const handle = async (message) => {
          if (message.kind === 'attached') {
            console.log(JSON.stringify({ event: 'attached', worker_id: message.attached.worker_id }));
          } else if (message.kind === 'offer' && !seen.has(message.offer.reservation_id)) {
            seen.add(message.offer.reservation_id);
            stream.write({ request_id: 'accept-1', accept: { reservation_id: message.offer.reservation_id } });
          } else if (message.kind === 'assigned') {
            const taskId = message.assigned.task_id;
            let { task } = await router.call('TaskService', 'CompleteTask', { task_id: taskId });
            if (task.status === 'TASK_STATUS_WRAPPING') { // the queue's wrap-up time: end it now
              ({ task } = await router.call('TaskService', 'WrapUpTask', { task_id: taskId }));
            }
            console.log(JSON.stringify({ event: 'completed', task_id: taskId, status: task.status }));
            stream.end();
            resolve(true);
          } else if (message.kind === 'error') {
            console.error(`desktop: ${message.error.code}: ${message.error.message}`);
          }
        };
        stream.on('error', (error) => {
          const leader = error.metadata && error.metadata.get('switchboard-leader')[0];
          if (leader) router.current = String(leader);
          resolve(false); // reconnect, whatever ended the stream
        });
        stream.on('end', () => resolve(false));
        stream.write({ request_id: 'hello-1', hello: { worker_id: workerId, activity: 'available' } });
      });
      if (!done) await sleep(200);
    }
  } finally {
    router.close();
  }
}

main().catch((error) => {
  console.error(`desktop: ${error.message}`);
  process.exit(1);
});
