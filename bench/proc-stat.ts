/**
 * CPU time from the text of a /proc/<pid>/stat (or /proc/<pid>/task/<tid>/stat) file:
 * utime + stime, fields 14 and 15 of stat(5), counted after the command name (which may
 * hold spaces), in seconds (clock ticks are 100 a second on Linux).
 */
export function statCpuSeconds(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
