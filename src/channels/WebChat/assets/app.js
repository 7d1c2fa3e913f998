// The web chat page. Plain browser JavaScript, no build step.
// Replies stream over SSE from POST <api>/messages; pushes arrive over GET <api>/events (EventSource).
// Agent text is rendered by renderMarkdown: markdown-it (served by the host from its own package, loaded
// before this script) with raw HTML off, so any HTML in agent text is escaped, and links limited to http(s).
(function () {
  "use strict"

  // ---- Markdown: markdown-it, HTML escaped, only http(s) links -------------------------------------------

  function escapeHtml(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;")
  }

  var SAFE_URL = /^https?:\/\/[^\s<>"']+$/i

  function createRenderer() {
    if (typeof window.markdownit !== "function") return null
    // html: false escapes every tag in the source; linkify turns bare http(s) URLs into links, and a
    // character that cannot be part of a URL (a quote, a closing parenthesis) ends it.
    var md = window.markdownit({ html: false, linkify: true, breaks: true, typographer: false })
    md.linkify.set({ fuzzyLink: false, fuzzyEmail: false, fuzzyIP: false })
    // Images would load from anywhere (and the page's policy blocks them): they stay text.
    md.disable("image")
    // Only absolute http(s) links; javascript:, data:, relative and the rest stay text.
    md.validateLink = function (url) { return /^https?:\/\//i.test(String(url).trim()) }
    var defaultLinkOpen = md.renderer.rules.link_open || function (tokens, i, options, env, self) {
      return self.renderToken(tokens, i, options)
    }
    md.renderer.rules.link_open = function (tokens, i, options, env, self) {
      tokens[i].attrSet("rel", "noopener noreferrer nofollow")
      tokens[i].attrSet("target", "_blank")
      return defaultLinkOpen(tokens, i, options, env, self)
    }
    return md
  }

  var markdown = createRenderer()

  function renderMarkdown(source) {
    var text = String(source).replace(/\r\n?/g, "\n")
    // Without the renderer (its script failed to load) the text is shown as it is, escaped.
    if (markdown === null) return "<p>" + escapeHtml(text).replace(/\n/g, "<br>") + "</p>"
    return markdown.render(text)
  }

  window.WebChatMarkdown = { render: renderMarkdown, escapeHtml: escapeHtml }

  // ---- Identity and conversation, kept in localStorage ----------------------------------------------------

  var ID = /^[A-Za-z0-9_-]{8,64}$/
  var memory = {}
  function load(key) {
    try { return window.localStorage.getItem(key) } catch (_) { return memory[key] || null }
  }
  function save(key, value) {
    try { window.localStorage.setItem(key, value) } catch (_) { memory[key] = value }
  }
  function randomId() {
    var bytes = new Uint8Array(16)
    window.crypto.getRandomValues(bytes)
    var s = ""
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i])
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
  }
  function idFor(key) {
    var value = load(key)
    if (value === null || !ID.test(value)) {
      value = randomId()
      save(key, value)
    }
    return value
  }

  var api = document.querySelector("meta[name=\"webchat-api\"]").getAttribute("content")
  var user = idFor("webchat.user")
  var session = idFor("webchat.session")

  // ---- DOM ---------------------------------------------------------------------------------------------

  var log = document.getElementById("log")
  var empty = document.getElementById("empty")
  var statusLine = document.getElementById("status")
  var errorBox = document.getElementById("error")
  var errorText = document.getElementById("error-text")
  var form = document.getElementById("composer")
  var input = document.getElementById("input")
  var send = document.getElementById("send")
  var reset = document.getElementById("new-conversation")
  var conversation = document.querySelector(".conversation")
  var busy = false

  function nearBottom() {
    return conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80
  }
  function scrollDown(force) {
    if (force || nearBottom()) conversation.scrollTop = conversation.scrollHeight
  }

  function addMessage(role, text, extraClass, label) {
    var item = document.createElement("li")
    item.className = "message " + role + (extraClass ? " " + extraClass : "")
    var who = document.createElement("span")
    who.className = "visually-hidden"
    who.textContent = role === "user" ? "You said:" : "Agent said:"
    item.appendChild(who)
    if (label) {
      var tag = document.createElement("span")
      tag.className = "label"
      tag.textContent = label
      item.appendChild(tag)
    }
    var body = document.createElement("div")
    body.className = "body"
    item.appendChild(body)
    setText(item, role, text)
    var stick = nearBottom()
    log.appendChild(item)
    empty.hidden = true
    scrollDown(stick)
    return item
  }

  function setText(item, role, text) {
    var body = item.querySelector(".body")
    // User text is shown verbatim (never parsed as HTML); agent text goes through the safe renderer.
    if (role === "user") body.textContent = text
    else body.innerHTML = renderMarkdown(text)
  }

  function clearLog() {
    while (log.firstChild) log.removeChild(log.firstChild)
    empty.hidden = false
  }

  function showError(message) {
    errorText.textContent = message
    errorBox.hidden = false
  }
  function hideError() {
    errorBox.hidden = true
    errorText.textContent = ""
  }

  function setBusy(value, text) {
    busy = value
    send.disabled = value
    log.setAttribute("aria-busy", value ? "true" : "false")
    statusLine.textContent = value ? (text || "Agent is typing") : ""
    statusLine.classList.toggle("working", value)
  }

  function errorMessage(body, status) {
    if (body && body.error && typeof body.error.message === "string") {
      var text = body.error.message
      if (typeof body.error.url === "string" && SAFE_URL.test(body.error.url)) text += " " + body.error.url
      return text.charAt(0).toUpperCase() + text.slice(1) + "."
    }
    return "The server answered with an error (HTTP " + status + "). Please try again."
  }

  function readError(response) {
    return response.text().then(function (text) {
      var body = null
      try { body = JSON.parse(text) } catch (_) { /* not JSON */ }
      return errorMessage(body, response.status)
    }, function () { return errorMessage(null, response.status) })
  }

  var offline = "Could not reach the server. Check your connection and try again."

  // ---- History -----------------------------------------------------------------------------------------

  function loadHistory() {
    var url = api + "/history?user=" + encodeURIComponent(user) + "&session=" + encodeURIComponent(session)
    return fetch(url, { headers: { accept: "application/json" } }).then(function (response) {
      if (!response.ok) return readError(response).then(showError)
      return response.json().then(function (body) {
        clearLog()
        body.messages.forEach(function (m) { addMessage(m.role, m.text) })
        scrollDown(true)
      })
    }, function () { showError(offline) })
  }

  // ---- Sending: POST, then read the SSE reply ------------------------------------------------------------

  function parseFrames(buffer, onFrame) {
    var parts = buffer.split(/\r?\n\r?\n/)
    var rest = parts.pop()
    parts.forEach(function (raw) {
      var event = "message"
      var data = []
      raw.split(/\r?\n/).forEach(function (line) {
        if (line.indexOf("event:") === 0) event = line.slice(6).trim()
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""))
      })
      if (data.length > 0) onFrame(event, data.join("\n"))
    })
    return rest
  }

  function sendMessage(text) {
    hideError()
    setBusy(true)
    var mine = addMessage("user", text)
    scrollDown(true)
    var reply = null
    var replyText = ""
    var failed = null
    var pending = false
    function render() {
      pending = false
      if (reply !== null) setText(reply, "assistant", replyText)
      scrollDown(false)
    }
    function schedule() {
      if (!pending) {
        pending = true
        window.requestAnimationFrame(render)
      }
    }
    function restoreDraft() {
      mine.remove()
      if (log.children.length === 0) empty.hidden = false
      if (input.value.trim() === "") input.value = text
      autosize()
    }
    return fetch(api + "/messages", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ user: user, session: session, message: text })
    }).then(function (response) {
      if (!response.ok) {
        return readError(response).then(function (message) {
          restoreDraft()
          showError(message)
        })
      }
      var reader = response.body.getReader()
      var decoder = new TextDecoder()
      var buffer = ""
      function onFrame(event, data) {
        var body
        try { body = JSON.parse(data) } catch (_) { return }
        if (event === "delta") {
          if (reply === null) {
            reply = addMessage("assistant", "", "streaming")
            setBusy(true, "Agent is replying")
          }
          replyText += body.text
          schedule()
        } else if (event === "done") {
          if (body.delivered) {
            if (reply === null) reply = addMessage("assistant", "")
            replyText = body.text
          }
          render()
        } else if (event === "error") {
          failed = errorMessage(body, 500)
        }
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            buffer = parseFrames(buffer + "\n\n", onFrame)
            return
          }
          buffer = parseFrames(buffer + decoder.decode(chunk.value, { stream: true }), onFrame)
          return pump()
        })
      }
      return pump().then(function () {
        if (failed !== null) {
          mine.classList.add("failed")
          showError(failed)
        }
      })
    }).catch(function () {
      if (reply === null) restoreDraft()
      showError(offline)
    }).then(function () {
      if (reply !== null) reply.classList.remove("streaming")
      setBusy(false)
    })
  }

  function submit() {
    var text = input.value
    if (busy || text.trim() === "") return
    input.value = ""
    autosize()
    input.focus()
    sendMessage(text)
  }

  function autosize() {
    input.style.height = "auto"
    input.style.height = Math.min(input.scrollHeight, 200) + "px"
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault()
    submit()
  })
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault()
      submit()
    }
  })
  input.addEventListener("input", autosize)
  document.getElementById("error-dismiss").addEventListener("click", function () {
    hideError()
    input.focus()
  })

  reset.addEventListener("click", function () {
    if (busy) return
    hideError()
    reset.disabled = true
    fetch(api + "/reset", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: user, session: session })
    }).then(function (response) {
      if (!response.ok) return readError(response).then(showError)
      clearLog()
      statusLine.textContent = "New conversation started."
    }, function () { showError(offline) }).then(function () {
      reset.disabled = false
      input.focus()
    })
  })

  // ---- Account linking: sign in once; a linked browser continues the person's conversation --------------

  var linkButton = document.getElementById("link-account")
  var unlinkButton = document.getElementById("unlink-account")
  var accountLabel = document.getElementById("account")
  var account = { linking: false, linked: false, shared: false, as: "" }
  var waiting = null

  function showAccount() {
    linkButton.hidden = !account.linking || account.linked
    unlinkButton.hidden = !account.linked
    accountLabel.hidden = !account.linked
    accountLabel.textContent = account.linked ? "Linked as " + account.as : ""
    accountLabel.title = accountLabel.textContent
    document.body.setAttribute("data-account", account.linked ? "linked" : account.linking ? "unlinked" : "none")
  }

  function stopWaiting() {
    if (waiting !== null) window.clearInterval(waiting)
    waiting = null
  }

  // Reads this browser's link; resolves true when the conversation changed with it (a shared one, or back).
  function refreshAccount() {
    var url = api + "/account?user=" + encodeURIComponent(user)
    return fetch(url, { headers: { accept: "application/json" } }).then(function (response) {
      if (!response.ok) return false
      return response.json().then(function (body) {
        var shared = account.shared
        account = {
          linking: body.linking === true,
          linked: body.linked === true,
          shared: body.shared === true,
          as: typeof body.as === "string" ? body.as : ""
        }
        showAccount()
        if (account.linked && waiting !== null) {
          stopWaiting()
          statusLine.textContent = "Account linked."
        }
        return account.shared !== shared
      })
    }, function () { return false })
  }

  function refreshConversation() {
    if (busy) return
    refreshAccount().then(function (changed) { if (changed) loadHistory() })
  }

  // The sign-in happens in another tab; this page checks every few seconds (for as long as the link is valid).
  function waitForLink() {
    stopWaiting()
    var until = Date.now() + 10 * 60 * 1000
    waiting = window.setInterval(function () {
      if (Date.now() > until) stopWaiting()
      else refreshConversation()
    }, 2000)
  }

  linkButton.addEventListener("click", function () {
    hideError()
    // Opened during the click: a tab opened once the request is back would count as a pop-up and be blocked.
    var tab = window.open("", "_blank")
    linkButton.disabled = true
    fetch(api + "/link", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ user: user })
    }).then(function (response) {
      if (!response.ok) {
        return readError(response).then(function (message) {
          if (tab) tab.close()
          showError(message)
        })
      }
      return response.json().then(function (body) {
        if (typeof body.url !== "string" || !SAFE_URL.test(body.url)) {
          if (tab) tab.close()
          return showError("The server sent no usable sign-in link. Please try again.")
        }
        if (tab) {
          tab.opener = null
          tab.location.href = body.url
          statusLine.textContent = "Sign in in the new tab; this chat continues here once your account is linked."
          waitForLink()
        } else {
          window.location.assign(body.url)
        }
      })
    }, function () {
      if (tab) tab.close()
      showError(offline)
    }).then(function () { linkButton.disabled = false })
  })

  unlinkButton.addEventListener("click", function () {
    hideError()
    unlinkButton.disabled = true
    fetch(api + "/unlink", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ user: user })
    }).then(function (response) {
      if (!response.ok) return readError(response).then(showError)
      statusLine.textContent = "Account unlinked."
      refreshConversation()
    }, function () { showError(offline) }).then(function () { unlinkButton.disabled = false })
  })

  window.addEventListener("focus", refreshConversation)

  // ---- Pushes: one EventSource per page, resumed from the last event seen --------------------------------

  var seen = {}
  function connectEvents() {
    if (typeof window.EventSource !== "function") return
    var last = load("webchat.lastEventId")
    var url = api + "/events?user=" + encodeURIComponent(user) +
      (last ? "&last_event_id=" + encodeURIComponent(last) : "")
    var source = new EventSource(url)
    source.onopen = function () { document.body.setAttribute("data-events", "open") }
    source.onerror = function () { document.body.setAttribute("data-events", "reconnecting") }
    source.onmessage = function (event) {
      if (event.lastEventId) {
        if (seen[event.lastEventId]) return
        seen[event.lastEventId] = true
        save("webchat.lastEventId", event.lastEventId)
      }
      var body
      try { body = JSON.parse(event.data) } catch (_) { return }
      ;(body.messages || []).forEach(function (m) {
        var label = body.kind === "echo" ? "You, on another channel" : "From another channel"
        addMessage(m.role === "user" ? "user" : "assistant", m.text, "pushed", label)
      })
    }
  }

  refreshAccount().then(loadHistory).then(function () {
    connectEvents()
  })
  input.focus()
})()
