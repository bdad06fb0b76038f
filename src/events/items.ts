/** An `items=a,b,c` query: the item ids, empty parts dropped; null when it names none. */
export function parseItems(value: string | undefined): string[] | null {
  if (value === undefined) return null
  const items = value.split(',').map((part) => part.trim()).filter(Boolean)
  return items.length ? items : null
}
