/**
 * PostgreSQL's continuous WAL archive: the supervised pg_receivewal of a sidecar, the segment
 * switch that bounds the RPO on a quiet primary, and the "incremental" run that makes the WAL
 * since the last base durable (PostgreSQL 15 has no block-level incremental base backup).
 */
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { ConfigError, type Settings } from "../config.js";
import { diskFull, sealAndUpload, spawnTool, type SealedArtifact } from "../storage/pipeline.js";
import { RepeatedFailure, log } from "../storage/progress.js";
import type { Storage, Lock } from "../storage/s3.js";
import { toolVersion } from "./tools.js";
import { WalCoverage, type WalMark } from "./wal-coverage.js";
import type { BackupContext, EngineResult } from "./types.js";
import { objectPrefix } from "../../contract/index.js";
import { walSegmentNumber } from "../../catalog/wal.js";
import { ensureSlot, pgConnect, pgEnv, slotName } from "./postgres.js";

/** Segment or timeline-history files that pg_receivewal has finished. */
const COMPLETE = /^([0-9A-F]{24}|[0-9A-F]{8}\.history)$/;

export interface WalSink {
  /** Records an uploaded segment (catalog wal_segment). */
  /** `coversUntil`: every write acknowledged before it is in this segment or an earlier one (wal-coverage.ts). */
  record(seg: SealedArtifact & { segment: string; timeline: number; coversUntil: Date }): Promise<void>;
}

/**
 * Continuous WAL: pg_receivewal (with a replication slot, so the primary keeps WAL we have not
 * streamed yet) writes into the spool in the state dir; every completed segment is sealed,
 * uploaded, recorded, then deleted locally. Every `switchSeconds`, when pg_current_wal_lsn has
 * moved, pg_switch_wal() closes the current segment so it reaches the object store within the
 * RPO even when the primary is quiet.
 */
export class WalStreamer {
  readonly spool: string;
  readonly slot: string;
  private proc?: ReturnType<typeof spawnTool>;
  private stopping = false;
  private lastLsn?: string;
  private timers: NodeJS.Timeout[] = [];
  private uploading: Promise<void> = Promise.resolve();
  /** Time the newest uploaded segment was completed (for WAL lag metrics). */
  lastUploadAt?: Date;
  lastSegment?: string;
  lastPartial?: string;
  uploaded = 0;
  onError: (e: Error) => void = (e) => log(`wal: ${e.message}`);
  /** The receiver restarts every 2 s while the primary is away: said once, then once a minute. */
  private readonly receiverDown = new RepeatedFailure("pg_receivewal stopped, started again every 2 s", (m) => this.onError(new Error(m)), (m) => log(`wal ${this.settings.service}: ${m}`));
  /** Uploads fail for as long as the object store is away: said once, once a minute, and when they work again. */
  private readonly uploadDown = new RepeatedFailure("WAL uploads failing, tried again until they work", (m) => this.onError(new Error(m)), (m) => log(`wal ${this.settings.service}: ${m}`));
  private drainQueued = false;
  private removedPartial?: string;
  private readonly switchDown = new RepeatedFailure("the segment switch failed", (m) => this.onError(new Error(m)), (m) => log(`wal ${this.settings.service}: ${m}`));
  private readonly coverage: WalCoverage;
  /** The primary's WAL segment size: a .partial of another size (but 0) is one pg_receivewal could not finish creating. */
  private segmentBytes = 16 * 1024 * 1024;

  /** @param covered the newest coversUntil this service's catalog rows claim already (after a restart). */
  constructor(
    private readonly settings: Settings,
    private readonly storage: Storage,
    private readonly recipientFile: string,
    private readonly sink: WalSink,
    private readonly lockFor: () => Lock | undefined,
    covered?: Date,
  ) {
    const service = settings.service;
    this.spool = path.join(settings.stateDir, "wal-spool", service);
    this.slot = slotName(service);
    this.coverage = new WalCoverage(covered);
  }

  async start(): Promise<void> {
    mkdirSync(this.spool, { recursive: true });
    // Marked before the slot exists: every segment the slot streams ends after this mark.
    const c = await pgConnect(this.settings);
    try {
      await this.readMark(c);
      this.segmentBytes = Number((await c.query<{ b: string }>("SELECT pg_size_bytes(current_setting('wal_segment_size'))::text AS b")).rows[0]!.b);
    } finally {
      await c.end();
    }
    await ensureSlot(this.settings, this.slot);
    await this.spawnReceiver();
    const every = this.settings.walSwitchSeconds * 1000;
    this.timers.push(setInterval(() => void this.switchIfMoved().then(() => this.switchDown.ok(), (e: Error) => this.switchDown.failed(e)), every));
    this.timers.push(setInterval(() => this.drain(), 1000));
  }

  private async spawnReceiver(): Promise<void> {
    this.removeUnfinishedPartial();
    await this.skipArchived().catch((e: Error) => log(`wal ${this.settings.service}: could not move slot ${this.slot} past the archived WAL (${e.message}); the receiver streams from where the slot is`));
    if (this.stopping) return;
    const env = pgEnv(this.settings);
    // --no-loop: we supervise and restart it, so a lost primary shows up in our logs and metrics.
    const proc = (this.proc = spawnTool("pg_receivewal", ["-D", this.spool, "--slot", this.slot, "--no-loop", "--no-password", "--status-interval=5"], { env, stdin: "ignore" }));
    let running = true;
    // Still streaming 10 s on: whatever kept it from starting is over (said once).
    this.timers.push(setTimeout(() => running && this.receiverDown.ok(), 10_000));
    // When the receiver stops (primary gone, network cut, our own stop), the newest WAL is in
    // the .partial file: uploading it keeps what was streamed up to the last moment.
    const afterExit = (e?: Error) => {
      running = false;
      if (!this.stopping) this.receiverDown.failed(this.explained(e ?? new Error("pg_receivewal exited")));
      void this.drain(true).finally(() => this.restartLater());
    };
    proc.exited.then(() => afterExit(), afterExit);
  }

  /**
   * pg_receivewal fills a new segment file with zeros to its full size before it writes WAL into
   * it. On a full disk that fill stops part way, and pg_receivewal then refuses to start again
   * ("has N bytes, should be 0 or 16777216") even once there is room: such a file holds no WAL,
   * so it is removed and the receiver streams that segment again from the slot.
   */
  private removeUnfinishedPartial(): void {
    for (const f of readdirSync(this.spool).filter((n) => /^[0-9A-F]{24}\.partial$/.test(n))) {
      const size = statSync(path.join(this.spool, f)).size;
      if (size === 0 || size === this.segmentBytes) continue;
      rmSync(path.join(this.spool, f));
      // Said once per file: on a disk still full, each attempt leaves the same file again.
      if (f === this.removedPartial) continue;
      this.removedPartial = f;
      log(`wal ${this.settings.service}: removed ${f} (${size} of ${this.segmentBytes} bytes: pg_receivewal could not finish creating it, the disk was full); it streams that segment again from slot ${this.slot}`);
    }
  }

  /**
   * Moves the slot (not in use between two receivers) to the end of the newest segment already
   * archived: pg_receivewal confirms what it wrote only every few seconds, so one that died on a
   * full disk sooner would otherwise stream the same segments again, fill the disk with them, and
   * never get further.
   */
  private async skipArchived(): Promise<void> {
    if (!this.lastSegment) return;
    const end = (walSegmentNumber(this.lastSegment, this.segmentBytes) + 1n) * BigInt(this.segmentBytes);
    const lsn = `${(end >> 32n).toString(16).toUpperCase()}/${(end & 0xffffffffn).toString(16).toUpperCase()}`;
    const c = await pgConnect(this.settings);
    try {
      await c.query("SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active AND restart_lsn < $2::pg_lsn", [this.slot, lsn]);
    } finally {
      await c.end();
    }
  }

  private finishedPartial(f: string): boolean {
    try {
      return statSync(path.join(this.spool, f)).size === this.segmentBytes;
    } catch {
      return false; // gone meanwhile (continued into a completed segment)
    }
  }

  /** A full spool disk named with what waits in it and what happens meanwhile. */
  private explained(e: Error): Error {
    if (!diskFull(e)) return e;
    const waiting = readdirSync(this.spool).filter((f) => COMPLETE.test(f));
    const bytes = waiting.reduce((n, f) => n + statSync(path.join(this.spool, f)).size, 0);
    return new Error(
      `the WAL spool ${this.spool} is full (${waiting.length} segment(s), ${(bytes / 1024 ** 2).toFixed(0)} MiB, waiting for upload): ${diskFull(e, this.settings.stateDir)}. ` +
        `The receiver starts again as uploads free space; the primary keeps the WAL in slot ${this.slot} meanwhile, so watch its disk. (${e.message.split("\n")[0]})`,
    );
  }

  private restartLater(): void {
    if (this.stopping) return;
    const t = setTimeout(() => {
      if (!this.stopping) void this.spawnReceiver();
    }, 2000);
    this.timers.push(t);
  }

  /** One coverage mark (wal-coverage.ts): the primary's clock, then its flush LSN, in one statement. */
  private async readMark(c: pg.Client): Promise<WalMark & { current: string }> {
    const r = (await c.query<{ at: Date; flush: string; current: string }>("SELECT clock_timestamp() AS at, pg_current_wal_flush_lsn()::text AS flush, pg_current_wal_lsn()::text AS current")).rows[0]!;
    const mark = { at: r.at, lsn: r.flush };
    this.coverage.mark(mark);
    return { ...mark, current: r.current };
  }

  /** pg_switch_wal() when there was activity; returns the completed segment's name and the mark taken just before. */
  async switchIfMoved(force = false): Promise<{ segment: string; mark: WalMark } | undefined> {
    const c = await pgConnect(this.settings);
    try {
      const mark = await this.readMark(c);
      if (!force && mark.current === this.lastLsn) return undefined;
      let r;
      try {
        r = await c.query<{ seg: string; lsn: string }>("SELECT pg_walfile_name(l) AS seg, l::text AS lsn FROM pg_switch_wal() AS l");
      } catch (e) {
        if (/permission denied/.test((e as Error).message)) {
          throw new ConfigError(`pg_switch_wal() is not allowed for ${this.settings.require("targetUser")}: run 'GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${this.settings.require("targetUser")};' on the primary (needed to bound the RPO).`);
        }
        throw e;
      }
      this.lastLsn = (await c.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
      return { segment: r.rows[0]!.seg, mark };
    } finally {
      await c.end();
    }
  }

  /** Uploads every completed file in the spool, one at a time, oldest first. */
  drain(includePartial = false): Promise<void> {
    // One drain waiting behind the running one is enough: while the store is away, one a second
    // would pile up behind each 25 s of retries.
    if (this.drainQueued && !includePartial) return this.uploading;
    this.drainQueued = true;
    this.uploading = this.uploading.then(async () => {
      this.drainQueued = false;
      const all = readdirSync(this.spool).sort();
      const files = all.filter((f) => COMPLETE.test(f));
      // Only a .partial pg_receivewal finished creating holds WAL: one it could not fill to full
      // size (a full disk) holds none, is not a segment recovery accepts ("wrong size" is FATAL
      // there), and is removed before the next receiver starts.
      if (includePartial) files.push(...all.filter((f) => /^[0-9A-F]{24}\.partial$/.test(f) && this.finishedPartial(f)));
      for (const f of files) {
        try {
          await this.uploadOne(f);
          this.uploadDown.ok();
        } catch (e) {
          this.uploadDown.failed(e as Error);
          return;
        }
      }
    });
    return this.uploading;
  }

  private async uploadOne(f: string): Promise<void> {
    const file = path.join(this.spool, f);
    // No claim (the epoch) only for a segment older than every mark after a lost catalog; it is still replayed.
    const coversUntil = this.coverage.coversUntil(f) ?? new Date(0);
    const sealed = await sealAndUpload({
      storage: this.storage,
      key: `${objectPrefix("wal", this.settings.service)}${f}.zst.age`,
      name: f,
      source: createReadStream(file),
      recipientFile: this.recipientFile,
      lock: this.lockFor(),
    });
    await this.sink.record({ ...sealed, segment: f, timeline: parseInt(f.slice(0, 8), 16), coversUntil });
    if (f.endsWith(".partial")) {
      this.lastPartial = f;
      return; // pg_receivewal continues this file when it reconnects
    }
    rmSync(file);
    this.uploaded++;
    this.lastSegment = f;
    this.lastUploadAt = new Date();
  }

  /** Forces a switch and waits until the completed segment has been uploaded and recorded. */
  async switchAndFlush(timeoutMs = 120_000): Promise<{ segment: string; mark: WalMark }> {
    const switched = (await this.switchIfMoved(true))!;
    const seg = switched.segment;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.drain();
      if (this.lastSegment !== undefined && this.lastSegment >= seg && !existsSync(path.join(this.spool, seg))) return switched;
      if (Date.now() > deadline) throw new Error(`WAL segment ${seg} did not reach the object store within ${timeoutMs / 1000} s: check pg_receivewal (replication connection, slot ${this.slot}).`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t), clearInterval(t);
    if (this.proc && this.proc.child.exitCode === null) {
      this.proc.child.kill("SIGINT");
      await this.proc.exited.catch(() => undefined);
    }
    await this.drain(true);
  }
}

/** Why an incremental cannot run yet: checked before any streaming starts (a slot would then hold WAL for it). */
export const noBaseYet = (service: string): ConfigError =>
  new ConfigError(`there is no completed full backup of ${service} yet: run 'kdr-agent backup --type full' first (an incremental is the WAL since the last base).`);

/** An incremental run: the WAL since the last base, made durable now. */
export async function backupIncremental(ctx: BackupContext, streamer: WalStreamer, sinceBase: { backupId: string; at: Date } | undefined): Promise<EngineResult> {
  if (!sinceBase) throw noBaseYet(ctx.service);
  const before = streamer.uploaded;
  const { segment: seg, mark } = await streamer.switchAndFlush();
  return {
    artifacts: [],
    tool: "pg_receivewal",
    toolVersion: toolVersion("pg_receivewal"),
    recoveryPointStart: sinceBase.at,
    // What the flushed segment holds: writes acknowledged before the switch (not the flush's end).
    recoveryPointEnd: mark.at,
    details: {
      meaning: "WAL since the last base backup, uploaded as wal/ segments (PostgreSQL 15 has no block-level incremental base backup)",
      baseBackupId: sinceBase.backupId,
      uptoSegment: seg,
      segmentsUploadedThisRun: streamer.uploaded - before,
    },
  };
}
