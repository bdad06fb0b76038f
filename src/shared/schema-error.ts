/** The fields of an Ajv or TypeBox validation error that its wording needs. */
export interface SchemaError {
  instancePath?: string
  keyword?: string
  params?: Record<string, unknown>
  message?: string
}

/**
 * One sentence naming the field, `<where> <what is wrong>`, including what Ajv words vaguely
 * (an unknown or a missing property, a value outside a list). `root` prefixes the path
 * (`body`, `querystring`); without one the path loses its leading slash (`PORT must be …`).
 */
export function describeSchemaError(error: SchemaError, root = ''): string {
  const params = error.params ?? {}
  const path = root ? `${root}${error.instancePath ?? ''}` : (error.instancePath ?? '').replace(/^\//, '')
  const child = (name: unknown) => (path ? `${path}/${String(name)}` : String(name))
  // Ajv names one property (`additionalProperty`, `missingProperty`), TypeBox lists them.
  if (error.keyword === 'additionalProperties') return `${child(params.additionalProperty ?? params.additionalProperties)} is not allowed`
  if (error.keyword === 'required') return `${child(params.missingProperty ?? params.requiredProperties)} is required`
  const where = path || 'value'
  if (Array.isArray(params.allowedValues)) return `${where} must be one of ${params.allowedValues.join(', ')}`
  return `${where} ${error.message ?? 'is invalid'}`
}
