// Sign-in: a link's token arrives in the fragment (never sent to a server); the page posts
// it once and forgets it, or the person pastes a token.
const form = document.getElementById("signin");
const problem = document.getElementById("problem");
const next = new URLSearchParams(location.search).get("next") || "/";

async function signIn(token, link) {
  const answer = await fetch("/api/signin", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token, link }),
  });
  if (answer.ok) {
    // Only a page of this console: browsers read "//x" and "/\x" as another site's address.
    location.replace(/^\/(?![\/\\])/.test(next) ? next : "/");
    return;
  }
  problem.textContent = (await answer.json()).message;
}

const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  history.replaceState(null, "", location.pathname + location.search);
  signIn(fragment.get("token"), true);
}
form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(document.getElementById("token").value.trim(), false);
});

// A city's identity provider, when the console is configured with one; a sign-in it
// refused comes back here saying why.
const problemSaid = new URLSearchParams(location.search).get("problem");
if (problemSaid) problem.textContent = problemSaid;
fetch("/api/signin/methods").then((answer) => answer.json()).then(({ provider }) => {
  if (!provider) return;
  document.getElementById("provider-link").href = `/signin/oidc?${new URLSearchParams({ next })}`;
  document.getElementById("provider-link").title = provider;
  document.getElementById("provider").hidden = false;
});
