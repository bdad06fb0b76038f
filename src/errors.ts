import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { Type } from 'typebox'
import { redactUrl } from './logger.js'
import { describeSchemaError } from './shared/schema-error.js'

/** The error JSON every failure answers (`statusCode`, `error`, `message`), for route schemas and /docs. */
export const ErrorResponse = Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String() })

/** Route response schemas for the error statuses a route can answer: `errorResponses(400, 401)`. */
export function errorResponses(...statuses: number[]): Record<number, typeof ErrorResponse> {
  return Object.fromEntries(statuses.map((status) => [status, ErrorResponse]))
}

/** What a route with a bearer token declares for /docs. */
export const BEARER = [{ bearer: [] }]

/** An error a client can act on: its status, a message without secrets, and headers to send. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

/** 400 messages that name the field (`body/rating must be <= 5`, `body/extra is not allowed`). */
export function schemaErrorFormatter(errors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(describeSchemaError(errors[0], dataVar))
}

export function errorBody(statusCode: number, message: string) {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/** The error JSON for every failure; a 5xx we did not expect is logged and told apart from nothing. */
export function errorHandler(error: FastifyError | HttpError, request: FastifyRequest, reply: FastifyReply) {
  const statusCode = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
  if (error instanceof HttpError) reply.headers(error.headers)
  if (statusCode >= 500 && !(error instanceof HttpError)) {
    request.log.error({ err: error }, 'unexpected error')
    return reply.code(500).send(errorBody(500, 'Internal Server Error'))
  }
  return reply.code(statusCode).send(errorBody(statusCode, error.message))
}

/** 404 naming the route, credentials redacted (Fastify's own 404 logs and answers the raw URL). */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  const message = `Route ${request.method}:${redactUrl(request.url)} not found`
  request.log.info(message)
  return reply.code(404).send(errorBody(404, message))
}
