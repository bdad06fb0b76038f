/** The HttpOnly SameSite cookie that may carry the JWT for the SSE stream (browsers' EventSource). */
export const SESSION_COOKIE = 'mb_session'
