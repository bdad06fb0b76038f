import { readFile } from 'node:fs/promises'

/** Resident set size (VmRSS) of a process in MB, read from /proc; 0 once it is gone. */
export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024
}
