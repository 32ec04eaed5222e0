// A page's use of realtime.js, typed against realtime.d.ts. `tsc -p .`
// (run by .ci/run) fails when the declarations and this use disagree.
import {
  collection,
  presence,
  connect,
  multiplex,
  record,
  RealtimeError,
  resolveUrl,
  type LostInfo,
  type Position,
  type FeedRow,
  type FeedView,
  type Publication,
  type StateEvent,
} from "../../django_realtime/static/django_realtime/realtime.js";

interface ChatMessage {
  type: "message";
  id: number;
  author: string;
  text: string;
}

const rt = connect("/ws/chat/", {
  httpUrl: "/realtime/chat/",
  transports: ["websocket", "sse", "poll"],
  backoff: { initial: 500, max: 10_000 },
  pollTimeout: 25,
});

const stopState = rt.onState((event: StateEvent) => {
  if (event.state === "reconnecting") {
    console.log(`retry ${event.attempt} in ${event.delay} ms (${event.code})`);
  }
});
rt.onSession((event) => {
  if (!event.ok) console.warn(event.error.code);
});

const saved: Position | null = JSON.parse(localStorage.getItem("pos") ?? "null");
const room = rt.subscribe<ChatMessage>("room.lobby", {
  since: saved,
  onPublication(data: ChatMessage, publication: Publication<ChatMessage>) {
    console.log(data.author, data.text, publication.offset);
  },
  onLost(info: LostInfo) {
    console.warn("lost", info.reason, info.epoch);
  },
  onPosition(position) {
    localStorage.setItem("pos", JSON.stringify(position));
  },
});
room.ready.then((info) => console.log(info.recovered, info.replayed));
const off = room.on("message", (data) => console.log(data.id));

async function post(text: string): Promise<number> {
  try {
    const reply = await rt.request<{ id: number }>("post", { text }, { timeout: 5000 });
    return reply.id;
  } catch (error) {
    if (error instanceof RealtimeError && error.code === "timeout") return -1;
    throw error;
  }
}

const mux = multiplex("/ws/", {
  connectTimeout: 5000,
  httpUrl: "/realtime/mux/",
  transports: ["websocket", "sse"],
});
const badge = mux.topic("jobs/count", {
  onMessage(data) {
    if (typeof data === "string") console.log(JSON.parse(data));
  },
  onClose(event) {
    if (event.final) console.log("closed for good", event.code, event.reason);
  },
});
badge.sendJson({ type: "hello" });
const chat = mux.streams("chat/lobby");
chat.subscribe("room.lobby");

// A feed's live collection: each user's own jobs, newest first.
interface JobRow extends FeedRow {
  pk: number;
  status: string;
  progress: number;
}
const jobs = collection<JobRow>(rt, "jobs.job", {
  compare: (a, b) => b.pk - a.pk,
  onError: (error) => console.warn(error.code),
});
jobs.on("enter", (row: JobRow) => console.log("new", row.pk));
jobs.on("update", (row, previous) => console.log(row.progress, previous.progress));
jobs.on("leave", (pk: number) => console.log("gone", pk));
jobs.on("change", (live) => console.log(live.list().map((row) => row.status)));
void jobs.ready.then((live) => live.rows.get(1)?.status);
// A named query's rows (with its parameters), and one row.
const running = collection<JobRow>(rt, "jobs.job", {
  query: "status",
  params: { status: "running" },
});
running.on("leave", (pk: number, previous: JobRow) => console.log(pk, previous.status));
const one = record<JobRow>(rt, "jobs.job", 7, { onError: (error) => console.warn(error.code) });
one.on("change", (live) => console.log(live.row?.progress ?? "gone"));
const followed: FeedView<JobRow> = one.view;
void followed;

// Who is in the room: each user once, with their number of connections.
interface ChatMember {
  id: number;
  username: string;
}
const here = presence<ChatMember>(rt, "chat.lobby", {
  onError: (error) => console.warn(error.code),
});
here.on("join", (key: string, member) => console.log(key, member.info.username));
here.on("update", (_key, member, previous) => console.log(member.connections, previous.v));
here.on("leave", (key: string) => console.log("left", key));
here.on("sync", (members) => console.log(members.size));
here.on("change", (live) => console.log(live.list().map((info) => info.username)));
void here.ready.then((live) => live.members.get("1")?.connections);

console.log(resolveUrl("/ws/", "https://example.com/page"), rt.transport, rt.state);
void post("hi");
off();
stopState();
badge.close();
mux.close();
void jobs.close();
void here.close();
rt.close(1000, "bye");
