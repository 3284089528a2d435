// A share link lands here as /shares/open#<token>. Browsers never send the fragment,
// so the token is in no request line, access log or proxy log. It is posted once, in
// the body, and taken out of the address bar and history; the answer sets the share's
// cookie and names the token-free page to go on to (/shares/<share id>).

const view = document.querySelector('[data-testid="share-open"]');
const fragment = location.hash.slice(1);
history.replaceState(null, "", location.pathname);

function gone() {
  view.querySelector('[data-field="opening"]').hidden = true;
  view.querySelector('[data-field="gone"]').hidden = false;
}

async function open() {
  const token = decodeURIComponent(fragment);
  if (!token) return gone();
  const response = await fetch("/shares/open", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  if (!response.ok) return gone();
  const { url } = await response.json();
  if (typeof url !== "string" || !/^\/shares\/[0-9a-f]{16}$/.test(url)) return gone();
  location.replace(url);
}

if (view) open().catch(gone);
